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
--
-- A failed send (ichvol down) is not marked as sent: it is tried again when the next study becomes stable
-- (Orthanc 1.10 has no timer for Lua), or by hand:
--   curl -u admin:... -X POST http://orthanc:8042/modalities/ichvol/store -d '<Orthanc study ID>'

ICHVOL_MODALITY = 'ichvol'
ROUTED_METADATA = 'IchvolRoutedInstances'

local pendingStudies = {}  -- Orthanc study IDs whose last send failed (kept until Orthanc restarts)

local function routedCount(seriesId)
  local names = ParseJson(RestApiGet('/series/' .. seriesId .. '/metadata'))
  for _, name in pairs(names) do
    if name == ROUTED_METADATA then
      return tonumber(RestApiGet('/series/' .. seriesId .. '/metadata/' .. ROUTED_METADATA)) or 0
    end
  end
  return 0
end

local function routeStudy(studyId)
  local answer = RestApiGet('/studies/' .. studyId .. '/series')
  if answer == nil then
    return true  -- the study was deleted meanwhile: nothing left to do
  end
  local toSend = {}
  local counts = {}
  for _, s in pairs(ParseJson(answer)) do
    local count = #s['Instances']
    if s['MainDicomTags']['Modality'] == 'CT' and count > routedCount(s['ID']) then
      table.insert(toSend, s['ID'])
      counts[s['ID']] = count
    end
  end
  if #toSend == 0 then
    print('ichvol routing: study ' .. studyId .. ' has no CT series left to send, skipped')
    return true
  end

  print('ichvol routing: sending ' .. #toSend .. ' CT series of study ' .. studyId .. ' to ' .. ICHVOL_MODALITY)
  local body = DumpJson({ Resources = toSend, Synchronous = true }, true)
  -- RestApiPost answers nil (it does not raise) when the C-STORE fails.
  local ok, result = pcall(RestApiPost, '/modalities/' .. ICHVOL_MODALITY .. '/store', body)
  if not ok or result == nil then
    print('ichvol routing: C-STORE of study ' .. studyId .. ' to ' .. ICHVOL_MODALITY ..
          ' failed, will try again on the next stable study')
    return false
  end
  for id, count in pairs(counts) do
    RestApiPut('/series/' .. id .. '/metadata/' .. ROUTED_METADATA, tostring(count))
  end
  return true
end

function OnStableStudy(studyId, tags, metadata)
  local retry = pendingStudies
  pendingStudies = {}
  retry[studyId] = true
  for id, _ in pairs(retry) do
    if not routeStudy(id) then
      pendingStudies[id] = true
    end
  end
end
