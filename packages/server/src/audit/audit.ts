import { createHash } from "node:crypto";
import type {
  AuditEvent,
  AuditFilters,
  AuditOutcome,
  AuditPage,
  AuditVerification,
} from "@flotilla/contracts";
import pg from "pg";
import { type Db, type Queryable, withTx } from "../platform/db/pool.ts";

/**
 * Who did an audited action and from where: the token (a browser session acts as its token),
 * `system` for the control plane's own work, `anonymous` for a login that named no valid token.
 * Routes make it from the request (`auditContext` in api/context.ts); services take it as an
 * argument, never the request itself.
 */
export interface AuditContext {
  orgId: string;
  actor: string;
  requestId: string | null;
  ip: string | null;
}

export const systemActor = (orgId: string): AuditContext => ({
  orgId,
  actor: "system",
  requestId: null,
  ip: null,
});

/** A principal acting outside any request (a test, the forge's commands, the scheduler). */
export const actorOf = (p: { orgId: string; tokenId: string }): AuditContext => ({
  orgId: p.orgId,
  actor: p.tokenId,
  requestId: null,
  ip: null,
});

export interface AuditEntry {
  /** `<thing>.<verb>`: `token.create`, `session.delete`, `auth.login_failed`, … */
  action: string;
  targetType?: string;
  targetId?: string;
  outcome?: AuditOutcome;
  /** What else says what happened; never a secret's value. */
  detail?: Record<string, unknown>;
}

/** The `prev_hash` of each org's first row. */
export const GENESIS = "0".repeat(64);

interface Row {
  org_id: string;
  seq: number;
  at: Date;
  actor: string;
  actor_label: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: AuditOutcome;
  request_id: string | null;
  ip: string | null;
  detail: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

/** JSON with object keys sorted at every depth: jsonb keeps no key order, so the hash must not depend on it. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object")
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  return v;
}

/**
 * SHA-256 over the row's fields in a fixed order (a JSON array: no field can bleed into the next)
 * and the previous row's hash. `v1` names this serialisation, should it ever change.
 */
export function hashOf(r: Omit<Row, "hash">): string {
  const fields = [
    "v1",
    r.org_id,
    r.seq,
    r.at.toISOString(),
    r.actor,
    r.actor_label,
    r.action,
    r.target_type,
    r.target_id,
    r.outcome,
    r.request_id,
    r.ip,
    canonical(r.detail),
    r.prev_hash,
  ];
  return createHash("sha256").update(JSON.stringify(fields)).digest("hex");
}

const toEvent = (r: Row): AuditEvent => ({
  seq: r.seq,
  at: r.at.toISOString(),
  actor: r.actor,
  actorLabel: r.actor_label,
  action: r.action,
  targetType: r.target_type,
  targetId: r.target_id,
  outcome: r.outcome,
  requestId: r.request_id,
  ip: r.ip,
  detail: r.detail,
  prevHash: r.prev_hash,
  hash: r.hash,
});

async function append(tx: Queryable, a: AuditContext, e: AuditEntry): Promise<void> {
  // Upserting the head locks it until the transaction ends: appends of one org take turns, in
  // the order their transactions reach this point, and a rolled-back action leaves no row and no
  // gap. The actor's label (the token's name) is read here, as it is at the time of the action.
  const { rows } = await tx.query(
    `insert into audit_heads (org_id, last_seq, last_hash) values ($1, 0, $2)
     on conflict (org_id) do update set org_id = excluded.org_id
     returning last_seq, last_hash, (select name from tokens where id = $3) as label`,
    [a.orgId, GENESIS, a.actor],
  );
  const head = rows[0] as { last_seq: number; last_hash: string; label: string | null };
  // The JSON round trip drops what jsonb would (undefined), so the hash is of what is stored.
  const detail = JSON.parse(JSON.stringify(e.detail ?? {})) as Record<string, unknown>;
  const row: Omit<Row, "hash"> = {
    org_id: a.orgId,
    seq: head.last_seq + 1,
    at: new Date(),
    actor: a.actor,
    actor_label: head.label,
    action: e.action,
    target_type: e.targetType ?? null,
    target_id: e.targetId ?? null,
    outcome: e.outcome ?? "ok",
    request_id: a.requestId,
    ip: a.ip,
    detail,
    prev_hash: head.last_hash,
  };
  const hash = hashOf(row);
  await tx.query(
    `with ins as (
       insert into audit_events (org_id, seq, at, actor, actor_label, action, target_type, target_id,
                                 outcome, request_id, ip, detail, prev_hash, hash)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14))
     update audit_heads set last_seq = $2, last_hash = $14 where org_id = $1`,
    [
      row.org_id,
      row.seq,
      row.at,
      row.actor,
      row.actor_label,
      row.action,
      row.target_type,
      row.target_id,
      row.outcome,
      row.request_id,
      row.ip,
      JSON.stringify(row.detail),
      row.prev_hash,
      hash,
    ],
  );
}

function where(orgId: string, f: AuditFilters, args: unknown[]): string {
  args.push(orgId);
  let w = "org_id = $1";
  if (f.action) w += ` and left(action, length($${args.push(f.action)}::text)) = $${args.length}::text`;
  if (f.actor) w += ` and actor = $${args.push(f.actor)}`;
  if (f.target) w += ` and target_id = $${args.push(f.target)}`;
  if (f.outcome) w += ` and outcome = $${args.push(f.outcome)}`;
  if (f.since) w += ` and at >= $${args.push(f.since)}`;
  if (f.until) w += ` and at < $${args.push(f.until)}`;
  return w;
}

const bad = (checked: number, headSeq: number, seq: number, reason: string): AuditVerification => ({
  ok: false,
  checked,
  headSeq,
  firstBadSeq: seq,
  reason,
});

/**
 * The org's audit log: append-only (a trigger refuses updates and deletes) and hash-chained, so
 * what the trigger cannot stop (a superuser who switches it off) `verify` finds.
 */
export const AuditLog = {
  /**
   * Appends one row. Given the action's own transaction, the row commits or rolls back with the
   * action; given the pool, it is a transaction of its own (for what is not one transaction: say
   * so where it is called).
   */
  async record(q: Queryable, a: AuditContext, e: AuditEntry): Promise<void> {
    if (q instanceof pg.Pool) await withTx(q, (tx) => append(tx, a, e));
    else await append(q, a, e);
  },

  /** Newest first; the cursor is the last seq of the previous page. */
  async list(db: Db, orgId: string, f: AuditFilters, limit: number, cursor?: string): Promise<AuditPage> {
    const args: unknown[] = [];
    let w = where(orgId, f, args);
    if (cursor) w += ` and seq < $${args.push(Number(cursor))}`;
    const { rows } = await db.query(
      `select * from audit_events where ${w} order by seq desc limit $${args.push(limit + 1)}`,
      args,
    );
    const items = (rows as Row[]).slice(0, limit).map(toEvent);
    return { items, nextCursor: rows.length > limit ? String(items[items.length - 1]!.seq) : null };
  },

  /** Every matching row, oldest first, in batches (an export of any size in bounded memory). */
  async *export(db: Db, orgId: string, f: AuditFilters): AsyncGenerator<AuditEvent> {
    let after = 0;
    for (;;) {
      const args: unknown[] = [];
      const w = where(orgId, f, args);
      const { rows } = await db.query(
        `select * from audit_events where ${w} and seq > $${args.push(after)} order by seq limit 1000`,
        args,
      );
      for (const r of rows as Row[]) yield toEvent(r);
      if (rows.length < 1000) return;
      after = (rows[rows.length - 1] as Row).seq;
    }
  },

  /**
   * Walks the chain from seq 1 in one snapshot: each row must come next (no gap: nothing deleted),
   * link to the row before (no row put in or taken out), and hash to its own hash (nothing
   * altered); the head must end where the rows end (no tail cut off, nothing appended past it).
   */
  verify(db: Db, orgId: string): Promise<AuditVerification> {
    return withTx(db, async (tx) => {
      await tx.query("set transaction isolation level repeatable read, read only");
      const head = (await tx.query("select last_seq, last_hash from audit_heads where org_id = $1", [orgId]))
        .rows[0] as { last_seq: number; last_hash: string } | undefined;
      const headSeq = head?.last_seq ?? 0;
      let checked = 0;
      let prev = GENESIS;
      let beforePrev: string | undefined;
      let expect = 1;
      for (;;) {
        const { rows } = await tx.query(
          "select * from audit_events where org_id = $1 and seq >= $2 order by seq limit 5000",
          [orgId, expect],
        );
        for (const r of rows as Row[]) {
          checked++;
          if (r.seq !== expect)
            return bad(
              checked,
              headSeq,
              expect,
              `row ${expect} is missing (deleted): the next row is ${r.seq}`,
            );
          if (r.prev_hash !== prev) {
            if (r.prev_hash === beforePrev)
              return bad(
                checked,
                headSeq,
                r.seq - 1,
                `row ${r.seq - 1} was inserted: row ${r.seq} links to row ${r.seq - 2}`,
              );
            return bad(
              checked,
              headSeq,
              r.seq,
              `row ${r.seq} does not link to row ${r.seq - 1}: a row was altered, inserted or deleted here`,
            );
          }
          if (hashOf(r) !== r.hash)
            return bad(
              checked,
              headSeq,
              r.seq,
              `row ${r.seq} was altered: its content does not match its hash`,
            );
          beforePrev = prev;
          prev = r.hash;
          expect++;
        }
        if (rows.length < 5000) break;
      }
      const last = expect - 1;
      if (last < headSeq)
        return bad(
          checked,
          headSeq,
          last + 1,
          `rows ${last + 1} to ${headSeq} are missing (deleted): the chain head is at ${headSeq}`,
        );
      if (last > headSeq)
        return bad(checked, headSeq, headSeq + 1, `row ${headSeq + 1} was inserted past the chain head`);
      if (head && head.last_hash !== prev)
        return bad(checked, headSeq, last, `row ${last} does not match the chain head's hash`);
      return { ok: true, checked, headSeq };
    });
  },
};
