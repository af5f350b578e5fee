-- Argo CD health check for the llmft kinds (DatasetGeneration, FineTuneJob, Evaluation).
-- Install it for each kind under resource.customizations.health.llmft.io_<Kind> in argocd-cm
-- (docs/gitops.md shows how). It reads only what the operator writes: status.phase,
-- status.conditions (Ready, Failed, SpecOutOfDate), status.observedGeneration, status.progress.
--   Healthy      the workload finished (phase Succeeded, or Ready=True)
--   Degraded     it failed (phase Failed or Failed=True), or a spec change cannot be applied
--   Progressing  everything else: not yet seen by the operator, waiting for inputs, running
local hs = {}

local function condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function text(value, fallback)
  if value == nil or value == "" then
    return fallback
  end
  return value
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the llmft operator to pick it up"
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "the operator has not yet seen generation " .. tostring(generation)
  return hs
end

local failed = condition(status, "Failed")
if status.phase == "Failed" or (failed ~= nil and failed.status == "True") then
  hs.status = "Degraded"
  hs.message = text(status.message, failed ~= nil and text(failed.message, failed.reason) or "failed")
  return hs
end

-- The Job ran an older spec; the new one is not applied until the object is re-created.
local stale = condition(status, "SpecOutOfDate")
if stale ~= nil and stale.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stale.message, "spec changed after the workload started")
  return hs
end

local ready = condition(status, "Ready")
if status.phase == "Succeeded" or (ready ~= nil and ready.status == "True") then
  hs.status = "Healthy"
  hs.message = text(status.message, "succeeded")
  return hs
end

hs.status = "Progressing"
local message = text(status.phase, "Pending")
local progress = status.progress
if progress ~= nil and progress.percent ~= nil then
  message = message .. string.format(" (%.0f%%)", progress.percent)
elseif progress ~= nil and progress.step ~= nil and progress.total ~= nil then
  message = message .. " (" .. tostring(progress.step) .. "/" .. tostring(progress.total) .. ")"
end
if status.message ~= nil and status.message ~= "" then
  message = message .. ": " .. status.message
end
hs.message = message
return hs
