import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir, waitFor } from "../../../test/support.ts";
import { opencodeServerEnv } from "../src/agents/opencode/config.ts";
import { healthy } from "../src/agents/opencode/health.ts";
import type { HarnessRecord, RuntimeDriver, ShardStorage } from "../src/runtime/driver.ts";
import { tailFile } from "../src/runtime/process.ts";

/**
 * The contract every runtime driver passes (in the spirit of Hono's shared router suite): one
 * function, run once per driver by driver-contract.test.ts. Everything here is a real process.
 */
export function driverContract(name: string, make: () => RuntimeDriver) {
  describe(`runtime driver contract: ${name}`, () => {
    let driver: RuntimeDriver;
    let home: string;
    let shard: ShardStorage;
    let tree: string;
    const started: HarnessRecord[] = [];
    const children: ChildProcess[] = [];

    beforeAll(async () => {
      driver = make();
      home = tempDir(`contract-${name}`);
      shard = { id: "shd_contract", dir: join(home, "shards", "shd_contract") };
      await driver.provision(shard);
      tree = join(shard.dir, "workspaces", "wsp_1");
      mkdirSync(tree, { recursive: true });
      writeFileSync(join(tree, "file.txt"), "in the workspace\n");
      await driver.provision(shard, [tree]);
    });
    afterAll(async () => {
      for (const c of children) c.kill("SIGKILL");
      for (const r of started) await driver.stop(r, 500);
    });

    it("exec runs in the workspace with the given environment and none of the control plane's", async () => {
      process.env.FLOTILLA_CONTRACT_SECRET = "do-not-leak";
      try {
        const r = await driver.exec({
          shard,
          cwd: tree,
          command: ["sh", "-c", 'echo "$FOO"; echo "${FLOTILLA_CONTRACT_SECRET:-unset}"; pwd; cat file.txt'],
          env: { FOO: "bar" },
          timeoutMs: 30_000,
        });
        expect(r).toMatchObject({ exitCode: 0, timedOut: false });
        expect(r.stdout).toBe(`bar\nunset\n${tree}\nin the workspace\n`);
      } finally {
        delete process.env.FLOTILLA_CONTRACT_SECRET;
      }
    });

    it("exec gives the exit code, takes stdin and streams output as it comes", async () => {
      const chunks: string[] = [];
      const r = await driver.exec({
        shard,
        cwd: tree,
        command: ["sh", "-c", "cat; echo oops >&2; exit 3"],
        stdin: "from stdin\n",
        timeoutMs: 30_000,
        onOutput: (c) => chunks.push(c),
      });
      expect(r).toMatchObject({ exitCode: 3, stdout: "from stdin\n", stderr: "oops\n", timedOut: false });
      expect(chunks.join("")).toContain("from stdin");
    });

    it("exec stops a command at its deadline, with everything it started", async () => {
      const t0 = Date.now();
      const r = await driver.exec({
        shard,
        cwd: tree,
        command: ["sh", "-c", "sleep 60 & sleep 60; echo never"],
        timeoutMs: 500,
      });
      expect(r.timedOut).toBe(true);
      expect(r.exitCode).toBeNull();
      expect(r.stdout).not.toContain("never");
      expect(Date.now() - t0).toBeLessThan(30_000);
    });

    it("attach gives a PTY in the workspace: input, output, resize, exit", async () => {
      const pty = driver.attach({
        shard,
        cwd: tree,
        command: ["bash", "--norc", "--noprofile", "-i"],
        cols: 80,
        rows: 24,
      });
      let out = "";
      pty.onData((d) => {
        out += d;
      });
      const exited = new Promise<number>((res) => pty.onExit((e) => res(e.exitCode)));
      pty.write("stty size; pwd\r");
      await waitFor(async () => out.includes("24 80") && out.includes(tree), 30_000, "stty size 24 80");
      pty.resize(100, 30);
      pty.write("stty size\r");
      await waitFor(async () => out.includes("30 100"), 30_000, "stty size 30 100");
      pty.write("exit 7\r");
      expect(await exited).toBe(7);
    });

    const startHarness = async () => {
      const password = "contract-password";
      const h = await driver.start({
        harnessId: `hrn_contract_${started.length}`,
        shard,
        runDir: join(home, "harnesses", String(started.length)),
        env: opencodeServerEnv(shard, password),
        password,
        readyTimeoutMs: 60_000,
        network: "none",
        egress: [],
      });
      started.push(h);
      return { h, password };
    };

    it("start resolves when the server answers; logs and stats read it; stop is idempotent", async () => {
      const { h, password } = await startHarness();
      expect(h.driver).toBe(name);
      expect(await healthy(h.endpoint, password, 5000)).toBe(true);
      expect(await driver.inspect(h)).toBe("running");
      expect(await driver.logs(h)).toContain("opencode server listening");
      expect((await driver.stats(h)).rssBytes).toBeGreaterThan(10 * 1024 * 1024);
      await driver.stop(h, 2000);
      expect(await driver.inspect(h)).toBe("gone");
      expect(await healthy(h.endpoint, password, 500)).toBe(false);
      await driver.stop(h, 2000); // again: no error
    });

    it("inspect sees a harness that was killed", async () => {
      const { h } = await startHarness();
      const pid = Number(h.ref.pid);
      expect(pid).toBeGreaterThan(1);
      process.kill(-pid, "SIGKILL");
      await waitFor(async () => (await driver.inspect(h)) === "gone", 30_000, "harness gone");
    });

    it("a harness outlives the control plane that started it and is adopted by the next", async () => {
      const runDir = join(home, "harnesses", "adopted");
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          join(import.meta.dirname, "fixtures", "start-harness.ts"),
          name,
          shard.dir,
          runDir,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      children.push(child);
      let line = "";
      let err = "";
      child.stdout!.on("data", (d) => {
        line += d;
      });
      child.stderr!.on("data", (d) => {
        err += d;
      });
      const exit = new Promise<string>((r) => child.once("exit", (code, signal) => r(`${signal ?? code}`)));
      let exited: string | undefined;
      void exit.then((x) => {
        exited = x;
      });
      // If it never says, the failure says what the child and its harness did.
      await waitFor(
        async () => line.includes("\n") || exited !== undefined,
        90_000,
        "record from the child",
      ).catch(async (e) => {
        throw new Error(
          `${(e as Error).message}\nchild stderr: ${err.slice(-2000)}\nharness.log: ${(await tailFile(join(runDir, "harness.log"), 2000).catch(() => "(none)")) || "(empty)"}`,
        );
      });
      expect(exited, `the child exited (${exited}) before its record: ${err.slice(-2000)}`).toBeUndefined();
      const record = JSON.parse(line) as HarnessRecord & { password: string };
      started.push(record);
      // The control plane dies hard; its harness does not.
      child.kill("SIGKILL");
      await exit;
      const next = make();
      expect(await next.inspect(record)).toBe("running");
      expect(await healthy(record.endpoint!, record.password, 5000)).toBe(true);
      await next.stop(record, 2000);
      expect(await next.inspect(record)).toBe("gone");
    });
  });
}
