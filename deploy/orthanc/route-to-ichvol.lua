-- Auto-routing of head CT studies from Orthanc to ichvol (IHE AI Results style: ichvol sends its
-- DICOM SEG and SR back into the same study).
--
-- Orthanc calls OnStableStudy once no instance of the study has arrived for StableAge seconds.
-- Every CT series of the study is sent to the DicomModalities entry named ICHVOL_MODALITY.
--
-- Loop avoidance: ichvol's SEG + SR arrive in the study later and make it "stable" again. The script
-- records in the series metadata how many instances of each CT series it has sent, and only sends again
-- a CT series that has gained instances since (late images). A study with only SEG/SR/other series, or
-- whose CT series were all sent already, is left alone, so ichvol's own results never trigger a new run.
-- Requires "UserMetadata" : { "IchvolRoutedInstances" : 1024 } in orthanc.json.

ICHVOL_MODALITY = 'ichvol'
ROUTED_METADATA = 'IchvolRoutedInstances'

local function routedCount(seriesId)
  local ok, value = pcall(RestApiGet, '/series/' .. seriesId .. '/metadata/' .. ROUTED_METADATA)
  if ok and value ~= nil and value ~= '' then
    return tonumber(value) or 0
  end
  return 0
end

function OnStableStudy(studyId, tags, metadata)
  local series = ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))
  local toSend = {}
  local counts = {}
  for _, s in pairs(series) do
    local modality = s['MainDicomTags']['Modality']
    local count = #s['Instances']
    if modality == 'CT' and count > routedCount(s['ID']) then
      table.insert(toSend, s['ID'])
      counts[s['ID']] = count
    end
  end

  if #toSend == 0 then
    print('ichvol routing: study ' .. studyId .. ' has no CT series left to send, skipped')
    return
  end

  print('ichvol routing: sending ' .. #toSend .. ' CT series of study ' .. studyId .. ' to ' .. ICHVOL_MODALITY)
  local body = { Resources = toSend, Synchronous = true }
  local ok, err = pcall(RestApiPost, '/modalities/' .. ICHVOL_MODALITY .. '/store', DumpJson(body, true))
  if not ok then
    -- Not marked as routed: the next stable event of this study (or a manual resend) tries again.
    print('ichvol routing: C-STORE of study ' .. studyId .. ' to ' .. ICHVOL_MODALITY .. ' failed: ' .. tostring(err))
    return
  end
  for id, count in pairs(counts) do
    RestApiPut('/series/' .. id .. '/metadata/' .. ROUTED_METADATA, tostring(count))
  end
end
