import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import css from "highlight.js/lib/languages/css";
import diff from "highlight.js/lib/languages/diff";
import go from "highlight.js/lib/languages/go";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";
import { Marked } from "marked";
import { memo, useMemo } from "react";

// The languages agents write most; each grammar is a few KB, the full set would be ~300 KB.
for (const [name, lang] of Object.entries({
  bash,
  css,
  diff,
  go,
  java,
  javascript,
  json,
  python,
  rust,
  sql,
  typescript,
  xml,
  yaml,
}))
  hljs.registerLanguage(name, lang);
for (const [alias, name] of [
  ["sh", "bash"],
  ["shell", "bash"],
  ["ts", "typescript"],
  ["tsx", "typescript"],
  ["js", "javascript"],
  ["jsx", "javascript"],
  ["py", "python"],
  ["html", "xml"],
  ["yml", "yaml"],
  ["rs", "rust"],
] as const)
  hljs.registerAliases(alias, { languageName: name });

export function highlight(code: string, lang?: string): string {
  if (lang && hljs.getLanguage(lang)) return hljs.highlight(code, { language: lang }).value;
  return hljs.highlightAuto(code).value;
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    code({ text, lang }) {
      const language = (lang ?? "").split(/\s/)[0] ?? "";
      const body = highlight(text, language || undefined);
      return `<pre class="hljs-block"><code class="hljs">${body}</code></pre>`;
    },
  },
});

/**
 * The agent's markdown, rendered with marked (GFM) and sanitised by DOMPurify before it touches
 * the DOM: model output is untrusted. Links open in a new tab without an opener.
 */
export const Markdown = memo(function Markdown({ text }: { text: string }) {
  const html = useMemo(() => {
    const raw = marked.parse(text, { async: false });
    return DOMPurify.sanitize(raw, { ADD_ATTR: ["target"] }).replaceAll(
      "<a ",
      '<a target="_blank" rel="noopener noreferrer" ',
    );
  }, [text]);
  return (
    <div
      className="prose prose-sm prose-stone max-w-none dark:prose-invert prose-pre:my-2 prose-pre:bg-transparent prose-pre:p-0"
      // biome-ignore lint/security/noDangerouslySetInnerHtml: sanitised by DOMPurify just above
      dangerouslySetInnerHTML={{ __html: html }}
    />
  );
});
