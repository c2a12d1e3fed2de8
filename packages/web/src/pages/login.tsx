import { useQueryClient } from "@tanstack/react-query";
import { useNavigate } from "@tanstack/react-router";
import { type FormEvent, useState } from "react";
import { api } from "../api.ts";
import { Button, Card, ErrorNote, inputClass } from "../ui.tsx";

export function LoginPage() {
  const [token, setToken] = useState("");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();
  const qc = useQueryClient();
  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api.auth.login(token.trim());
      qc.clear();
      await navigate({ to: "/" });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="mx-auto mt-8 max-w-md">
      <Card>
        <h1 className="text-lg font-semibold">Log in</h1>
        <p className="mt-1 text-sm text-stone-600 dark:text-stone-400">
          Paste an API token. The first boot saved one to{" "}
          <code className="font-mono">~/.flotilla/admin.token</code>; make more with{" "}
          <code className="font-mono">flotilla token create</code>. The page keeps only a session cookie,
          never the token.
        </p>
        <form onSubmit={submit} className="mt-4 space-y-3">
          <label className="block text-sm font-medium" htmlFor="token">
            API token
          </label>
          <input
            id="token"
            name="token"
            type="password"
            autoComplete="off"
            placeholder="flt_…"
            value={token}
            onChange={(e) => setToken(e.target.value)}
            className={inputClass}
          />
          <ErrorNote error={error} />
          <Button tone="primary" type="submit" disabled={busy || !token.trim()} className="w-full">
            {busy ? "Logging in…" : "Log in"}
          </Button>
        </form>
      </Card>
    </div>
  );
}
