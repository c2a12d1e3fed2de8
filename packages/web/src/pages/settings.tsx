// Placeholder: being built.
export function SettingsPage() {
  return <p className="text-sm text-stone-500">Coming soon.</p>;
}
