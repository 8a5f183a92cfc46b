-- Argo CD health check for Switchyard (switchyard.dev/v1alpha1). The same script serves Topic,
-- Subscription, DeadLetterPolicy and EventSchema: it reads only what every kind's status has.
-- It agrees with kstatus (Flux, `kubectl wait`) except that a paused object is Suspended here.
--   being deleted                                    -> Progressing
--   switchyard.dev/paused: "true", or the operator
--   reports ReconciliationPaused=True                -> Suspended
--   no status yet, or observedGeneration behind
--   metadata.generation                              -> Progressing
--   Stalled=True (needs someone to act)              -> Degraded
--   Reconciling=True (gets there by itself)          -> Progressing
--   Ready=True                                       -> Healthy
--   Ready=False or Unknown, or no Ready              -> Progressing
-- Written for Lua 5.1, the dialect of Argo CD's interpreter.

local function condition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function describe(c)
  if c == nil then
    return ""
  end
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local function health()
  local generation = obj.metadata.generation or 0
  local observed = nil
  if obj.status ~= nil then
    observed = obj.status.observedGeneration
  end
  local ready = condition("Ready")

  if obj.metadata.deletionTimestamp ~= nil then
    return "Progressing", "being deleted; " .. describe(ready)
  end

  local annotations = obj.metadata.annotations
  local pausedAnnotation = annotations ~= nil and annotations["switchyard.dev/paused"] == "true"
  if pausedAnnotation or isTrue(condition("ReconciliationPaused")) then
    local message = "reconciliation is paused (annotation switchyard.dev/paused)"
    if observed == nil or observed < generation then
      message = message .. "; generation " .. generation .. " is not applied until it resumes"
    end
    if ready ~= nil then
      message = message .. "; last Ready=" .. tostring(ready.status) .. " " .. describe(ready)
    end
    return "Suspended", message
  end

  if observed == nil or observed == 0 then
    return "Progressing", "waiting for the operator to reconcile the object"
  end
  if observed < generation then
    return "Progressing", "generation " .. generation .. " is not reconciled yet (last reconciled: " .. observed .. ")"
  end

  local stalled = condition("Stalled")
  if isTrue(stalled) then
    return "Degraded", describe(stalled)
  end
  local reconciling = condition("Reconciling")
  if isTrue(reconciling) then
    return "Progressing", describe(reconciling)
  end
  if ready == nil then
    return "Progressing", "no Ready condition yet"
  end
  if ready.status == "True" then
    return "Healthy", describe(ready)
  end
  return "Progressing", "Ready=" .. tostring(ready.status) .. " " .. describe(ready)
end

local hs = {}
hs.status, hs.message = health()
return hs
