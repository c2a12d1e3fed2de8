import { asFailure, ErrorInfo, FAILURE_NAMES, FAILURES, failure, failureOfCode } from "@flotilla/contracts";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { failureOf } from "../src/agents/opencode/translate.ts";
import { afterFailure } from "../src/tasks/scheduler.ts";

// The pure parts of the failure vocabulary: how OpenCode's errors become failures where they are
// born, and how the scheduler's retry policy reads them. No harness, no database.

describe("OpenCode's errors, typed where they are born", () => {
  it("keeps OpenCode's own kinds, and an APIError is retriable exactly when OpenCode says so", () => {
    const limited = failureOf({
      name: "APIError",
      data: {
        message: "Rate limit reached",
        statusCode: 429,
        isRetryable: true,
        responseHeaders: { "Retry-After": "7" },
      },
    });
    expect(limited).toEqual({
      name: "APIError",
      message: "Rate limit reached",
      retriable: true,
      retryAfterMs: 7000,
      detail: "HTTP 429",
    });
    const refused = failureOf({
      name: "APIError",
      data: { message: "Invalid API key", statusCode: 401, isRetryable: false },
    });
    expect(refused).toMatchObject({ name: "APIError", retriable: false, detail: "HTTP 401" });
    expect(refused.retryAfterMs).toBeUndefined();
    expect(
      failureOf({ name: "ProviderAuthError", data: { providerID: "anthropic", message: "no key" } }),
    ).toEqual({
      name: "ProviderAuthError",
      message: "no key",
      retriable: false,
      detail: "provider anthropic",
    });
    // No message of its own: the kind's description stands in.
    expect(failureOf({ name: "MessageOutputLengthError", data: {} })).toEqual({
      name: "MessageOutputLengthError",
      message: FAILURES.MessageOutputLengthError.about,
      retriable: false,
    });
  });

  it("calls anything else an AgentError, and sends a stack trace to the log, not the event", () => {
    const traces: string[] = [];
    const e = failureOf(
      {
        name: "UnknownError",
        data: {
          message:
            "ProviderModelNotFoundError: Model not found: scripted/nope\n    at getModel (src/provider/provider.ts:812:13)\n    at async loop (src/session/prompt.ts:40:5)",
        },
      },
      (stack) => traces.push(stack),
    );
    expect(e).toEqual({
      name: "AgentError",
      message: "ProviderModelNotFoundError: Model not found: scripted/nope",
      retriable: false,
      detail: "UnknownError",
    });
    expect(JSON.stringify(e)).not.toContain(" at ");
    expect(traces).toEqual([
      "    at getModel (src/provider/provider.ts:812:13)\n    at async loop (src/session/prompt.ts:40:5)",
    ]);
    // A name OpenCode may add one day is not let through as a kind of ours.
    expect(failureOf({ name: "BrandNewError", message: "odd" })).toEqual({
      name: "AgentError",
      message: "odd",
      retriable: false,
      detail: "BrandNewError",
    });
    expect(failureOf(undefined)).toMatchObject({ name: "AgentError", retriable: false });
  });

  it("gives every failure it makes the API's shape", () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            name: fc.oneof(fc.constantFrom(...FAILURE_NAMES, "UnknownError"), fc.string()),
            message: fc.string(),
            data: fc.record(
              {
                message: fc.string(),
                statusCode: fc.integer({ min: 100, max: 599 }),
                isRetryable: fc.boolean(),
                responseHeaders: fc.dictionary(
                  fc.constantFrom("retry-after", "retry-after-ms", "x"),
                  fc.string(),
                ),
              },
              { requiredKeys: [] },
            ),
          },
          { requiredKeys: [] },
        ),
        (e) => {
          const f = failureOf(e);
          expect(ErrorInfo.safeParse(f).success).toBe(true);
          expect(f.message).not.toMatch(/\n\s+at\s/);
        },
      ),
    );
  });
});

describe("failures read from what older releases stored, and from refused API calls", () => {
  it("keeps a known kind, maps API codes onto kinds, and makes anything else an AgentError", () => {
    expect(asFailure({ name: "HarnessLost", message: "gone" })).toEqual({
      name: "HarnessLost",
      message: "gone",
      retriable: true,
    });
    expect(asFailure({ name: "HarnessLost", message: "gone", retriable: false })?.retriable).toBe(false);
    expect(asFailure({ name: "SomethingOld", message: "x" })).toEqual({
      name: "AgentError",
      message: "x",
      retriable: false,
      detail: "SomethingOld",
    });
    expect(asFailure(null)).toBeNull();
    expect(failureOfCode("harness_unavailable", "full", true)).toMatchObject({
      name: "HarnessUnavailable",
      retriable: true,
    });
    expect(failureOfCode("repo_not_found", "no repo", false)).toMatchObject({
      name: "RepositoryUnavailable",
      retriable: false,
    });
    expect(failureOfCode("session_busy", "busy", true)).toEqual({
      name: "Refused",
      message: "busy",
      retriable: true,
      detail: "session_busy",
    });
  });
});

describe("the retry policy reads what a failure says of itself, never its text", () => {
  const settings = fc.record({
    maxAttempts: fc.integer({ min: 1, max: 10 }),
    backoffBaseMs: fc.integer({ min: 1, max: 10_000 }),
    backoffMaxMs: fc.integer({ min: 1, max: 600_000 }),
  });
  const anyFailure = fc
    .record({
      name: fc.constantFrom(...FAILURE_NAMES),
      message: fc.string(),
      retriable: fc.boolean(),
      retryAfterMs: fc.option(fc.integer({ min: 0, max: 3_600_000 }), { nil: undefined }),
    })
    .map((f) => failure(f.name, f.message, { retriable: f.retriable, retryAfterMs: f.retryAfterMs }));

  it("cancels a cancelled task, fails on what cannot pass, retries the rest until attempts run out", () => {
    fc.assert(
      fc.property(
        anyFailure,
        settings,
        fc.integer({ min: 1, max: 12 }),
        fc.boolean(),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (error, s, attempt, cancelled, r) => {
          const next = afterFailure(error, attempt, { ...s, cancelled }, () => r);
          const expected = cancelled
            ? "cancelled"
            : !error.retriable
              ? "failed"
              : attempt >= s.maxAttempts
                ? "dead"
                : "queued";
          expect(next.to).toBe(expected);
          if (next.to !== "queued") return;
          const delay = (next as { delayMs: number }).delayMs;
          // Never sooner than the provider asked, never later than the back-off's cap or that.
          expect(delay).toBeGreaterThanOrEqual(error.retryAfterMs ?? 0);
          expect(delay).toBeLessThanOrEqual(Math.max(s.backoffMaxMs, error.retryAfterMs ?? 0));
        },
      ),
    );
  });

  it("decides the same whatever the message says", () => {
    fc.assert(
      fc.property(
        anyFailure,
        fc.string(),
        settings,
        fc.integer({ min: 1, max: 12 }),
        (error, text, s, attempt) => {
          const opts = { ...s, cancelled: false };
          const a = afterFailure(error, attempt, opts, () => 0.5);
          const b = afterFailure({ ...error, message: text }, attempt, opts, () => 0.5);
          expect(b).toEqual(a);
        },
      ),
    );
    // The text that once decided it ("401", "invalid api key") decides nothing now.
    const opts = { maxAttempts: 3, cancelled: false, backoffBaseMs: 10, backoffMaxMs: 100 };
    expect(afterFailure(failure("HarnessLost", "401 invalid api key"), 1, opts).to).toBe("queued");
    expect(
      afterFailure(failure("APIError", "temporarily overloaded", { retriable: false }), 1, opts).to,
    ).toBe("failed");
  });
});
