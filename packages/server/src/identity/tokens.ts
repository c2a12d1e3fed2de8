import { createHash, randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaError, newId, type TokenInfo } from "@flotilla/contracts";
import { type AuditContext, AuditLog, actorOf, systemActor } from "../audit/audit.ts";
import { LOCKS } from "../platform/db/locks.ts";
import { type Db, withTx } from "../platform/db/pool.ts";
import type { Principal } from "./principal.ts";

const hash = (token: string) => createHash("sha256").update(token).digest("hex");

const toInfo = (r: any): TokenInfo => ({
  id: r.id,
  name: r.name,
  role: r.role,
  prefix: r.prefix,
  createdAt: r.created_at.toISOString(),
  lastUsedAt: r.last_used_at?.toISOString() ?? null,
  revokedAt: r.revoked_at?.toISOString() ?? null,
});

export const DEFAULT_ORG = "org_default";

/**
 * Bearer tokens: `flt_` + 32 random bytes. Only a SHA-256 of each is stored (the token has full
 * entropy, so a fast hash is enough and keeps every request's check cheap).
 */
export class TokenService {
  constructor(private readonly db: Db) {}

  async ensureDefaultOrg(): Promise<void> {
    await this.db.query("insert into orgs (id, name) values ($1, 'default') on conflict do nothing", [
      DEFAULT_ORG,
    ]);
  }

  async create(
    orgId: string,
    name: string,
    role: "admin" | "member",
    a: AuditContext = systemActor(orgId),
  ): Promise<{ token: string; info: TokenInfo }> {
    const token = `flt_${randomBytes(32).toString("base64url")}`;
    const row = await withTx(this.db, async (tx) => {
      const { rows } = await tx.query(
        "insert into tokens (id, org_id, name, role, hash, prefix) values ($1, $2, $3, $4, $5, $6) returning *",
        [newId("tok"), orgId, name, role, hash(token), token.slice(0, 10)],
      );
      await AuditLog.record(tx, a, {
        action: "token.create",
        targetType: "token",
        targetId: rows[0].id,
        detail: { name, role },
      });
      return rows[0];
    });
    return { token, info: toInfo(row) };
  }

  /**
   * First boot: no token exists yet, so make the admin token, write it (0600) for the local CLI and
   * hand it back to be printed once. An advisory lock keeps two replicas from both making one.
   */
  async bootstrapAdmin(home: string): Promise<string | undefined> {
    const client = await this.db.connect();
    try {
      await client.query("begin");
      await client.query("select pg_advisory_xact_lock($1)", [LOCKS.bootstrapAdmin]);
      const { rowCount } = await client.query("select 1 from tokens limit 1");
      if (rowCount) {
        await client.query("commit");
        return undefined;
      }
      const token = `flt_${randomBytes(32).toString("base64url")}`;
      const id = newId("tok");
      await client.query(
        "insert into tokens (id, org_id, name, role, hash, prefix) values ($1, $2, 'admin (first boot)', 'admin', $3, $4)",
        [id, DEFAULT_ORG, hash(token), token.slice(0, 10)],
      );
      await AuditLog.record(client, systemActor(DEFAULT_ORG), {
        action: "token.create",
        targetType: "token",
        targetId: id,
        detail: { name: "admin (first boot)", role: "admin" },
      });
      writeFileSync(join(home, "admin.token"), `${token}\n`, { mode: 0o600 });
      await client.query("commit");
      return token;
    } catch (e) {
      // The error that matters is `e`, thrown on; a rollback that fails means the connection is
      // gone, and the transaction with it.
      await client.query("rollback").catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  async verify(token: string | undefined): Promise<Principal> {
    if (!token)
      throw new FlotillaError("unauthorized", "missing bearer token (Authorization: Bearer <token>)");
    const { rows } = await this.db.query(
      "update tokens set last_used_at = now() where hash = $1 and revoked_at is null returning id, org_id, role",
      [hash(token)],
    );
    if (!rows[0]) throw new FlotillaError("unauthorized", "invalid or revoked token");
    return { tokenId: rows[0].id, orgId: rows[0].org_id, role: rows[0].role };
  }

  async list(p: Principal): Promise<TokenInfo[]> {
    const { rows } = await this.db.query("select * from tokens where org_id = $1 order by id", [p.orgId]);
    return rows.map(toInfo);
  }

  async revoke(id: string, p: Principal, a: AuditContext = actorOf(p)): Promise<TokenInfo> {
    const row = await withTx(this.db, async (tx) => {
      const { rows } = await tx.query(
        "update tokens set revoked_at = coalesce(revoked_at, now()) where id = $1 and org_id = $2 returning *",
        [id, p.orgId],
      );
      if (!rows[0]) throw new FlotillaError("not_found", `no token ${id}`, { field: "id" });
      await AuditLog.record(tx, a, {
        action: "token.revoke",
        targetType: "token",
        targetId: id,
        detail: { name: rows[0].name },
      });
      return rows[0];
    });
    return toInfo(row);
  }

  static adminTokenExists(home: string): boolean {
    return existsSync(join(home, "admin.token"));
  }
}
