#!/usr/bin/env bash
# Make a test CA, a server certificate for the ichvol listener and a client certificate for a sending
# PACS/modality, for DICOM TLS tests and trials. NOT for production: use your hospital's PKI there.
#
#   deploy/make-tls-certs.sh OUT_DIR [SERVER_HOSTNAME]
#
# Writes OUT_DIR/{ca.crt,ca.key,server.crt,server.key,client.crt,client.key} (PEM, keys unencrypted,
# mode 600). The server certificate is valid for SERVER_HOSTNAME (default: localhost), localhost and
# 127.0.0.1. Use them in ichvol.toml:
#   [tls]  certificate = "OUT_DIR/server.crt"  key = "OUT_DIR/server.key"  ca = "OUT_DIR/ca.crt"
# and with DCMTK: echoscu +tls OUT_DIR/client.key OUT_DIR/client.crt +cf OUT_DIR/ca.crt HOST PORT
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 OUT_DIR [SERVER_HOSTNAME]" >&2
    exit 2
fi
out=$1
server_name=${2:-localhost}
days=825
command -v openssl >/dev/null || { echo "error: openssl is not installed" >&2; exit 1; }

mkdir -p "$out"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -keyout "$out/ca.key" -out "$out/ca.crt" -subj "/O=ichvol test/CN=ichvol test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

make_leaf() {  # name, subject CN, extended key usage, subjectAltName (may be empty)
    local name=$1 cn=$2 eku=$3 san=$4
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$out/$name.key" -out "$work/$name.csr" \
        -subj "/O=ichvol test/CN=$cn" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [[ -n $san ]] && echo "subjectAltName=$san"
    } > "$work/$name.ext"
    openssl x509 -req -in "$work/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
        -CAserial "$work/ca.srl" -days "$days" -sha256 -extfile "$work/$name.ext" -out "$out/$name.crt" 2>/dev/null
}

san="DNS:$server_name,IP:127.0.0.1"
[[ $server_name != localhost ]] && san="$san,DNS:localhost"
make_leaf server "$server_name" serverAuth "$san"
make_leaf client "ichvol test client" clientAuth ""
chmod 644 "$out/ca.crt" "$out/server.crt" "$out/client.crt"

openssl verify -CAfile "$out/ca.crt" "$out/server.crt" "$out/client.crt" >/dev/null
echo "TLS test certificates in $out: ca.crt, server.crt/.key (CN=$server_name), client.crt/.key"
