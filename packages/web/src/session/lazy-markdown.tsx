import { lazy, Suspense, useEffect, useState } from "react";

// The markdown stack (marked, highlight.js with its grammars, DOMPurify) is the largest part of the
// session page, and nothing of it is needed to show the agent's words: it loads after first paint,
// and until it has, the text shows as plain text (escaped by React, so no sanitising is needed).
const load = () => import("./markdown.tsx");
const Rendered = lazy(async () => ({ default: (await load()).Markdown }));

/** Starts loading the markdown stack without waiting for a message to need it. */
export function preloadMarkdown(): void {
  void load();
}

/**
 * Whether the markdown stack has arrived. Rows grow when their text is rendered as markdown, so a
 * view that follows the end of the conversation scrolls to it again at that moment.
 */
export function useMarkdownReady(): boolean {
  const [ready, setReady] = useState(false);
  useEffect(() => {
    let live = true;
    void load().then(() => {
      if (live) setReady(true);
    });
    return () => {
      live = false;
    };
  }, []);
  return ready;
}

export function Markdown({ text }: { text: string }) {
  return (
    <Suspense fallback={<div className="whitespace-pre-wrap text-sm">{text}</div>}>
      <Rendered text={text} />
    </Suspense>
  );
}
