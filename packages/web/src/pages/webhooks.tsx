// Placeholder: being built.
export function WebhooksPage() {
  return <p className="text-sm text-stone-500">Coming soon.</p>;
}

export function WebhookPage() {
  return <p className="text-sm text-stone-500">Coming soon.</p>;
}
