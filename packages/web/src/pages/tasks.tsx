// Placeholder: being built.
export function TasksPage() {
  return <p className="text-sm text-stone-500">Coming soon.</p>;
}

export function TaskPage() {
  return <p className="text-sm text-stone-500">Coming soon.</p>;
}
