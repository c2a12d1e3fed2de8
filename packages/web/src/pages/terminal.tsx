import { useParams } from "@tanstack/react-router";
import { lazy, Suspense } from "react";

// xterm.js is most of this tab's weight: it loads only when the tab is opened, so the session
// page's first load does not carry it.
const TerminalView = lazy(() => import("../terminal/terminal-view.tsx"));

export function TerminalPage() {
  const { id } = useParams({ from: "/s/$id" });
  return (
    <Suspense fallback={<p className="text-sm text-stone-500">Loading the terminal…</p>}>
      <TerminalView key={id} sessionId={id} />
    </Suspense>
  );
}
