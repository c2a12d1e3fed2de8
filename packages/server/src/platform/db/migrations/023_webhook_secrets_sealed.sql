-- Webhook signing secrets move into the secret store (sealed; see integrations/webhooks.ts): the
-- plain-text columns are emptied at boot, right after the migrations, once the master key is loaded.
alter table webhook_subscriptions alter column secret drop not null;
alter table webhook_secrets alter column secret drop not null;
