import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { newId } from "@flotilla/contracts";
import type { Tx } from "../platform/db/pool.ts";
import { ACTIVE_SQL } from "../sessions/status.ts";

export interface Shard {
  id: string;
  dir: string;
}

export const shardDir = (home: string, id: string) => join(home, "shards", id);

/** A fresh shard row and its directory; project null makes it a warm shard. */
export async function createShard(
  tx: Tx,
  home: string,
  replica: string,
  owner: { orgId: string; projectId: string } | null,
): Promise<Shard> {
  const id = newId("shd");
  const dir = shardDir(home, id);
  mkdirSync(dir, { recursive: true });
  await tx.query("insert into shards (id, org_id, project_id, dir, replica) values ($1, $2, $3, $4, $5)", [
    id,
    owner?.orgId ?? null,
    owner?.projectId ?? null,
    dir,
    replica,
  ]);
  return { id, dir };
}

/**
 * Where a new workspace of a project goes: the project's shard with the fewest active workspaces
 * (below the cap; one with a live harness preferred), else a warm shard given to the project,
 * else a new shard. The project row lock serialises placements of one project, so the cap holds.
 * Only this replica's shards: their files are on its disk and their harnesses its processes.
 */
export async function placeWorkspace(
  tx: Tx,
  home: string,
  replica: string,
  orgId: string,
  projectId: string,
  cap: number,
  live: (shardId: string) => boolean,
): Promise<Shard> {
  await tx.query("select 1 from projects where id = $1 for update", [projectId]);
  const { rows } = await tx.query(
    `select sh.id, sh.dir,
       (select count(distinct w.id) from workspaces w join sessions s on s.workspace_id = w.id
        where w.shard_id = sh.id and w.deleted_at is null and s.deleted_at is null
          and s.status in ${ACTIVE_SQL}) as active
     from shards sh where sh.project_id = $1 and sh.retired_at is null and (sh.replica = $2 or sh.replica is null)
     order by active asc, sh.created_at asc`,
    [projectId, replica],
  );
  const open = rows.filter((r) => Number(r.active) < cap);
  const pick = open.find((r) => live(r.id)) ?? open[0];
  if (pick) return { id: pick.id, dir: pick.dir };
  const warm = await tx.query(
    `update shards set project_id = $1, org_id = $2
     where id = (select id from shards where project_id is null and retired_at is null and replica = $3
                 order by created_at limit 1 for update skip locked)
     returning id, dir`,
    [projectId, orgId, replica],
  );
  if (warm.rows[0]) return { id: warm.rows[0].id, dir: warm.rows[0].dir };
  return createShard(tx, home, replica, { orgId, projectId });
}
