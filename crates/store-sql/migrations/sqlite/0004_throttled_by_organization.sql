-- Waking an organization's throttled leads (every call that ends frees an organization slot).
CREATE INDEX leads_throttled_org ON leads(organization_id, queued_at) WHERE state = 'throttled';
