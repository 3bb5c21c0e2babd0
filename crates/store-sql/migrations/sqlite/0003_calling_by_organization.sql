-- Calls in flight per organization (the organization-wide cap).
CREATE INDEX leads_calling_org ON leads(organization_id) WHERE state = 'calling';
