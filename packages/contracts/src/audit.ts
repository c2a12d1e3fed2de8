import { z } from "@hono/zod-openapi";

/** What became of an audited action: done, refused (no right, bad credential), or failed midway. */
export const AuditOutcome = z.enum(["ok", "denied", "failed"]).openapi("AuditOutcome");
export type AuditOutcome = z.infer<typeof AuditOutcome>;

/**
 * One row of the org's audit log. `seq` is gap-free per org; `hash` is SHA-256 over the row's
 * fields and `prevHash` (the previous row's hash), so any altered, inserted or deleted row breaks
 * the chain (`GET /audit/verify`).
 */
export const AuditEvent = z
  .object({
    seq: z.number().int(),
    at: z.string(),
    /** The token id (a browser session acts as its token), `system`, or `anonymous` (a failed login). */
    actor: z.string(),
    actorLabel: z.string().nullable(),
    /** `<thing>.<verb>`: `token.create`, `session.delete`, `auth.login_failed`, `secret.use`, … */
    action: z.string(),
    targetType: z.string().nullable(),
    targetId: z.string().nullable(),
    outcome: AuditOutcome,
    requestId: z.string().nullable(),
    ip: z.string().nullable(),
    detail: z.record(z.string(), z.unknown()),
    prevHash: z.string(),
    hash: z.string(),
  })
  .openapi("AuditEvent");
export type AuditEvent = z.infer<typeof AuditEvent>;

export const AuditFilters = z.object({
  /** A prefix of the action: `token.` or `session.delete`. */
  action: z.string().max(100).optional(),
  actor: z.string().max(100).optional(),
  target: z.string().max(200).optional(),
  outcome: AuditOutcome.optional(),
  /** ISO times, `since` inclusive, `until` exclusive. */
  since: z.string().datetime({ offset: true }).optional(),
  until: z.string().datetime({ offset: true }).optional(),
});
export type AuditFilters = z.infer<typeof AuditFilters>;

export const ListAuditQuery = AuditFilters.extend({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  /** The `nextCursor` of the previous page: newest first, so the rows below that seq. */
  cursor: z.string().regex(/^\d+$/).max(20).optional(),
});
export type ListAuditQuery = z.infer<typeof ListAuditQuery>;

export const AuditPage = z
  .object({ items: z.array(AuditEvent), nextCursor: z.string().nullable() })
  .openapi("AuditPage");
export type AuditPage = z.infer<typeof AuditPage>;

export const AuditVerification = z
  .object({
    ok: z.boolean(),
    /** Rows read. */
    checked: z.number().int(),
    /** The chain's last seq, as its head records it. */
    headSeq: z.number().int(),
    /** The first row (or the first missing seq) where the chain does not hold. */
    firstBadSeq: z.number().int().optional(),
    reason: z.string().optional(),
  })
  .openapi("AuditVerification");
export type AuditVerification = z.infer<typeof AuditVerification>;
