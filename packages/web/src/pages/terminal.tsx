// Placeholder: being built.
export function TerminalPage() {
  return <p className="text-sm text-stone-500">Coming soon.</p>;
}
