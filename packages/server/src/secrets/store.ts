import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaError, newId, type SecretInfo } from "@flotilla/contracts";
import { type AuditContext, AuditLog, systemActor } from "../audit/audit.ts";
import type { Db } from "../platform/db/pool.ts";
import { withTx } from "../platform/db/pool.ts";
import type { Logger } from "../platform/logger.ts";
import { registerSecret } from "../platform/redact.ts";

/** A master key and its id (a hash prefix: which key wrapped a row, never the key). */
export interface MasterKey {
  id: string;
  key: Buffer;
}

const keyId = (key: Buffer) => createHash("sha256").update(key).digest("hex").slice(0, 16);

function parseKey(text: string, where: string): MasterKey {
  const t = text.trim();
  const key = /^[0-9a-f]{64}$/i.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  if (key.length !== 32)
    throw new FlotillaError("invalid_request", `${where}: a master key is 32 bytes, base64 or hex`, {
      field: where,
    });
  return { id: keyId(key), key };
}

/**
 * The master keys: the current one wraps every new data key; previous ones only unwrap rows not yet
 * re-wrapped. From FLOTILLA_MASTER_KEY (and FLOTILLA_MASTER_KEY_PREVIOUS, comma-separated, while a
 * rotation is under way), else from `$FLOTILLA_HOME/master.key` (0600, made at first boot; one key
 * per line, the current first). Replicas that share a database must share the key: set it in the
 * environment there.
 */
export class Keyring {
  private constructor(
    readonly current: MasterKey,
    readonly previous: MasterKey[],
    /** The file the keys live in; undefined when they come from the environment. */
    readonly file: string | undefined,
  ) {}

  static load(home: string, env: { current?: string; previous?: string }): Keyring {
    if (env.current)
      return new Keyring(
        parseKey(env.current, "FLOTILLA_MASTER_KEY"),
        (env.previous ?? "")
          .split(",")
          .filter((k) => k.trim())
          .map((k) => parseKey(k, "FLOTILLA_MASTER_KEY_PREVIOUS")),
        undefined,
      );
    const file = join(home, "master.key");
    if (!existsSync(file)) writeFileSync(file, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
    const [first, ...rest] = readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => parseKey(l, file));
    if (!first) throw new FlotillaError("invalid_request", `${file} holds no key`, { field: file });
    return new Keyring(first, rest, file);
  }

  byId(id: string): MasterKey | undefined {
    return [this.current, ...this.previous].find((k) => k.id === id);
  }

  /** The same keyring with `next` current and every key of this one previous. */
  rotated(next: MasterKey): Keyring {
    return new Keyring(next, [this.current, ...this.previous], this.file);
  }

  /** Only the current key left (a rotation finished). */
  settled(): Keyring {
    return new Keyring(this.current, [], this.file);
  }

  /** Written atomically: a crash leaves the old file or the new, never half of one. */
  save(): void {
    if (!this.file) return;
    const tmp = `${this.file}.tmp`;
    writeFileSync(
      tmp,
      [this.current, ...this.previous].map((k) => `${k.key.toString("base64")}\n`).join(""),
      {
        mode: 0o600,
      },
    );
    renameSync(tmp, this.file);
  }
}

/** AES-256-GCM: 12-byte IV, then the 16-byte tag, then the ciphertext, in one buffer. */
function seal(key: Buffer, plain: Buffer, aad: string): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(Buffer.from(aad));
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]);
}

function unseal(key: Buffer, sealed: Buffer, aad: string): Buffer {
  const d = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, 12));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(sealed.subarray(12, 28));
  return Buffer.concat([d.update(sealed.subarray(28)), d.final()]);
}

interface Row {
  id: string;
  org_id: string;
  project_id: string | null;
  name: string;
  value: Buffer;
  data_key: Buffer;
  key_id: string;
  created_at: Date;
  updated_at: Date;
  last_used_at: Date | null;
}

const info = (r: Row): SecretInfo => ({
  id: r.id,
  name: r.name,
  scope: r.project_id ? "project" : "org",
  projectId: r.project_id,
  keyId: r.key_id,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  lastUsedAt: r.last_used_at?.toISOString() ?? null,
});

/**
 * Secrets in Postgres under envelope encryption: each value is sealed (AES-256-GCM) with a data key
 * of its own, and the data key is sealed with the master key, whose id is kept with the row. The
 * value is bound to its row (the secret's id is the AAD), the data key to its master key's id, so
 * a sealed value moved to another row does not open. A value leaves this class only to the
 * control plane's own use (`reveal`); the API shows name, scope and times.
 */
export class SecretStore {
  constructor(
    private readonly db: Db,
    private keyring: Keyring,
    private readonly log: Logger,
  ) {}

  get keyId(): string {
    return this.keyring.current.id;
  }

  private sealRow(id: string, value: string): { value: Buffer; dataKey: Buffer; keyId: string } {
    const dataKey = randomBytes(32);
    const master = this.keyring.current;
    return {
      value: seal(dataKey, Buffer.from(value, "utf8"), id),
      dataKey: seal(master.key, dataKey, master.id),
      keyId: master.id,
    };
  }

  private dataKeyOf(r: Pick<Row, "id" | "data_key" | "key_id">): Buffer {
    const master = this.keyring.byId(r.key_id);
    if (!master)
      throw new FlotillaError(
        "internal",
        `secret ${r.id} was sealed with master key ${r.key_id}, which this control plane does not have (replicas sharing a database need the same FLOTILLA_MASTER_KEY)`,
      );
    return unseal(master.key, r.data_key, master.id);
  }

  /** `a` when a person sets it (audited as `secret.set`); the control plane's own secrets go without. */
  async set(
    orgId: string,
    projectId: string | null,
    name: string,
    value: string,
    a?: AuditContext,
  ): Promise<SecretInfo> {
    const id = newId("sec");
    const sealed = this.sealRow(id, value);
    // A new value under the same name and scope replaces the old (a new id: a new row's AAD).
    const { rows } = await withTx(this.db, async (tx) => {
      // A project of this organisation, locked against its deletion meanwhile: an unknown one (or
      // another organisation's) is the caller's mistake, not a foreign-key 500.
      if (
        projectId !== null &&
        !(
          await tx.query("select 1 from projects where id = $1 and org_id = $2 for share", [projectId, orgId])
        ).rowCount
      )
        throw new FlotillaError("invalid_request", `no project ${projectId}`, { field: "projectId" });
      await tx.query(
        "delete from secrets where org_id = $1 and coalesce(project_id, '') = coalesce($2, '') and name = $3",
        [orgId, projectId, name],
      );
      const out = await tx.query(
        `insert into secrets (id, org_id, project_id, name, value, data_key, key_id)
         values ($1, $2, $3, $4, $5, $6, $7) returning *`,
        [id, orgId, projectId, name, sealed.value, sealed.dataKey, sealed.keyId],
      );
      if (a)
        await AuditLog.record(tx, a, {
          action: "secret.set",
          targetType: "secret",
          targetId: id,
          detail: { name, projectId },
        });
      return out;
    });
    registerSecret(value);
    return info(rows[0] as Row);
  }

  async list(orgId: string): Promise<SecretInfo[]> {
    const { rows } = await this.db.query(
      "select * from secrets where org_id = $1 order by coalesce(project_id, ''), name",
      [orgId],
    );
    return (rows as Row[]).map(info);
  }

  async delete(orgId: string, id: string, a: AuditContext = systemActor(orgId)): Promise<SecretInfo> {
    const row = await withTx(this.db, async (tx) => {
      const { rows } = await tx.query("delete from secrets where org_id = $1 and id = $2 returning *", [
        orgId,
        id,
      ]);
      if (!rows[0]) throw new FlotillaError("not_found", `no secret ${id}`);
      await AuditLog.record(tx, a, {
        action: "secret.delete",
        targetType: "secret",
        targetId: id,
        detail: { name: rows[0].name, projectId: rows[0].project_id },
      });
      return rows[0] as Row;
    });
    return info(row);
  }

  /**
   * The value under a name, made by `make` and stored if there is none yet: one value whoever asks
   * first (two replicas asking at once get the same one; the loser's `make` is thrown away).
   */
  async ensure(orgId: string, projectId: string | null, name: string, make: () => string): Promise<string> {
    const found = await this.reveal(orgId, projectId, name);
    if (found !== undefined) return found;
    const id = newId("sec");
    const value = make();
    const sealed = this.sealRow(id, value);
    await this.db.query(
      `insert into secrets (id, org_id, project_id, name, value, data_key, key_id)
       values ($1, $2, $3, $4, $5, $6, $7)
       on conflict (org_id, coalesce(project_id, ''), name) do nothing`,
      [id, orgId, projectId, name, sealed.value, sealed.dataKey, sealed.keyId],
    );
    const stored = await this.reveal(orgId, projectId, name);
    if (stored === undefined) throw new FlotillaError("internal", `secret ${name} was not stored`);
    return stored;
  }

  /** One value by name and scope (the control plane's own use), or undefined. */
  async reveal(orgId: string, projectId: string | null, name: string): Promise<string | undefined> {
    const { rows } = await this.db.query(
      `update secrets set last_used_at = now()
        where org_id = $1 and coalesce(project_id, '') = coalesce($2, '') and name = $3
       returning id, value, data_key, key_id`,
      [orgId, projectId, name],
    );
    return rows[0] ? this.open(rows[0] as Row) : undefined;
  }

  /** A sealed row's value, for a caller that read the row itself (a join). */
  open(r: Pick<Row, "id" | "value" | "data_key" | "key_id">): string {
    const v = unseal(this.dataKeyOf(r), r.value, r.id).toString("utf8");
    registerSecret(v);
    return v;
  }

  async deleteByName(orgId: string, projectId: string | null, name: string): Promise<void> {
    await this.db.query(
      "delete from secrets where org_id = $1 and coalesce(project_id, '') = coalesce($2, '') and name = $3",
      [orgId, projectId, name],
    );
  }

  /** The project-scoped values by name, by project (the control plane's own use: provider keys). */
  async revealProjects(orgId: string, names: string[]): Promise<Record<string, Record<string, string>>> {
    const rows = await this.revealAudited(
      orgId,
      `update secrets set last_used_at = now() where org_id = $1 and project_id is not null and name = any($2)
       returning id, project_id, name, value, data_key, key_id`,
      names,
    );
    const out: Record<string, Record<string, string>> = {};
    for (const r of rows as Row[]) out[r.project_id!] = { ...out[r.project_id!], [r.name]: this.open(r) };
    return out;
  }

  /** The org-wide values by name (the control plane's own use: provider keys). */
  async revealOrg(orgId: string, names: string[]): Promise<Record<string, string>> {
    const rows = await this.revealAudited(
      orgId,
      `update secrets set last_used_at = now() where org_id = $1 and project_id is null and name = any($2)
       returning id, name, value, data_key, key_id`,
      names,
    );
    const out: Record<string, string> = {};
    for (const r of rows as Row[]) out[r.name] = this.open(r);
    return out;
  }

  /**
   * The provider keys' read: one `secret.use` row per (re)load of the keys (boot, a key changed),
   * naming the secrets read, in the read's transaction. Not per model call: the gateway holds them.
   * (`reveal`, the control plane's per-use read of its own secrets, such as webhook signing keys,
   * is not audited: one row per delivery would drown the log.)
   */
  private async revealAudited(orgId: string, sql: string, names: string[]): Promise<Row[]> {
    return withTx(this.db, async (tx) => {
      const { rows } = await tx.query(sql, [orgId, names]);
      if (rows.length)
        await AuditLog.record(tx, systemActor(orgId), {
          action: "secret.use",
          targetType: "secret",
          detail: {
            purpose: "provider keys",
            secrets: (rows as Row[]).map((r) => ({
              id: r.id,
              name: r.name,
              projectId: r.project_id ?? null,
            })),
          },
        });
      return rows as Row[];
    });
  }

  /**
   * A new master key: every data key is unwrapped and wrapped again with it, in one transaction,
   * and the old key is forgotten once that commits. The values themselves are not touched (their
   * data keys do not change), so nothing that holds a value in use (the model gateway) notices.
   * The key file holds both keys while the rows are re-wrapped, so a crash midway loses nothing.
   */
  async rotateMaster(a?: AuditContext): Promise<{ keyId: string; rewrapped: number }> {
    if (!this.keyring.file)
      throw new FlotillaError(
        "conflict",
        "the master key comes from FLOTILLA_MASTER_KEY: set the new key there and the old one in FLOTILLA_MASTER_KEY_PREVIOUS, then restart (rows are re-wrapped at boot)",
      );
    const next = this.keyring.rotated(parseKey(randomBytes(32).toString("base64"), "new key"));
    next.save();
    this.keyring = next;
    const rewrapped = await this.rewrapStale();
    this.keyring = next.settled();
    this.keyring.save();
    this.log.info({ keyId: this.keyring.current.id, rewrapped }, "master key rotated");
    // Not one transaction (the key file is written around it): recorded once the rotation is done.
    if (a)
      await AuditLog.record(this.db, a, {
        action: "secret.rotate_master",
        targetType: "master_key",
        targetId: this.keyring.current.id,
        detail: { rewrapped },
      });
    return { keyId: this.keyring.current.id, rewrapped };
  }

  /** Every row not on the current master key, wrapped again with it (at boot, after an env rotation). */
  async rewrapStale(): Promise<number> {
    const current = this.keyring.current;
    return withTx(this.db, async (tx) => {
      const { rows } = await tx.query(
        "select id, data_key, key_id from secrets where key_id <> $1 for update",
        [current.id],
      );
      for (const r of rows as Row[]) {
        const dataKey = this.dataKeyOf(r);
        await tx.query("update secrets set data_key = $2, key_id = $3 where id = $1", [
          r.id,
          seal(current.key, dataKey, current.id),
          current.id,
        ]);
      }
      return rows.length;
    });
  }
}
