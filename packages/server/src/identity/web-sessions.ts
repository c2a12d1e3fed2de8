import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { FlotillaError } from "@flotilla/contracts";
import { type AuditContext, AuditLog } from "../audit/audit.ts";
import { type Db, withTx } from "../platform/db/pool.ts";
import type { Principal } from "./principal.ts";

const hash = (s: string) => createHash("sha256").update(s).digest("hex");

/** Absolute lifetime of a browser session; the person logs in again with a token after it. */
export const WEB_SESSION_TTL_MS = 7 * 24 * 3600 * 1000;

export interface WebPrincipal extends Principal {
  expiresAt: Date;
  csrfHash: string;
}

/**
 * Browser sessions. The cookie carries a fresh 32-byte secret, not the API token, so a stolen
 * cookie is bounded by its expiry and a logout ends it; the database keeps only SHA-256 hashes of
 * the secret and of the CSRF value (both full-entropy, so a fast hash suffices, as for tokens).
 * The session borrows its token's identity: revoking the token ends every session made from it.
 */
export class WebSessionService {
  constructor(private readonly db: Db) {}

  /** A login: the session row and its audit row (`auth.login`) in one transaction. */
  async create(p: Principal, a: AuditContext): Promise<{ secret: string; csrf: string; expiresAt: Date }> {
    const secret = randomBytes(32).toString("base64url");
    const csrf = randomBytes(32).toString("base64url");
    const expiresAt = new Date(Date.now() + WEB_SESSION_TTL_MS);
    await withTx(this.db, async (tx) => {
      // Expired rows are swept here rather than by a timer: logins are rare and this keeps it bounded.
      await tx.query("delete from web_sessions where expires_at < now()");
      await tx.query(
        "insert into web_sessions (hash, csrf_hash, token_id, expires_at) values ($1, $2, $3, $4)",
        [hash(secret), hash(csrf), p.tokenId, expiresAt],
      );
      await AuditLog.record(tx, a, { action: "auth.login", targetType: "token", targetId: p.tokenId });
    });
    return { secret, csrf, expiresAt };
  }

  async verify(secret: string): Promise<WebPrincipal> {
    const { rows } = await this.db.query(
      `select t.id, t.org_id, t.role, w.expires_at, w.csrf_hash
         from web_sessions w join tokens t on t.id = w.token_id
        where w.hash = $1 and w.expires_at > now() and t.revoked_at is null`,
      [hash(secret)],
    );
    const r = rows[0];
    if (!r) throw new FlotillaError("unauthorized", "browser session expired or logged out: log in again");
    return { tokenId: r.id, orgId: r.org_id, role: r.role, expiresAt: r.expires_at, csrfHash: r.csrf_hash };
  }

  /**
   * Double submit, bound to the session: the header must equal the readable cookie (a cross-site
   * page can send neither) and hash to the value issued with this session (so a cookie planted by
   * a sibling host cannot pair with a header the attacker chose).
   */
  static csrfMatches(p: WebPrincipal, header: string | undefined, cookie: string | undefined): boolean {
    if (!header || !cookie) return false;
    // Compared as bytes: a header of the cookie's length in characters but not in bytes (non-ASCII)
    // would make timingSafeEqual throw, a 500 for what is only a wrong header.
    const h = Buffer.from(header);
    const k = Buffer.from(cookie);
    if (h.length !== k.length || !timingSafeEqual(h, k)) return false;
    return hash(header) === p.csrfHash;
  }

  /** A logout: the session row goes, and its token's org logs `auth.logout` in the same transaction. */
  async remove(secret: string, from: Pick<AuditContext, "requestId" | "ip">): Promise<void> {
    await withTx(this.db, async (tx) => {
      const { rows } = await tx.query(
        `delete from web_sessions w using tokens t where w.hash = $1 and t.id = w.token_id
         returning t.id, t.org_id`,
        [hash(secret)],
      );
      const r = rows[0] as { id: string; org_id: string } | undefined;
      if (r)
        await AuditLog.record(
          tx,
          { ...from, orgId: r.org_id, actor: r.id },
          { action: "auth.logout", targetType: "token", targetId: r.id },
        );
    });
  }
}
