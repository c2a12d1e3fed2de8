// Placeholder: being built.
export function OverviewPage() {
  return <p className="text-sm text-stone-500">Coming soon.</p>;
}
