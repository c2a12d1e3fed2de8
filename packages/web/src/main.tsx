import { QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import {
  createRootRoute,
  createRoute,
  createRouter,
  Link,
  lazyRouteComponent,
  Outlet,
  RouterProvider,
  redirect,
  useNavigate,
  useRouterState,
} from "@tanstack/react-router";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { api, hasSessionCookie, isUnauthorized } from "./api.ts";
import { LoginPage } from "./pages/login.tsx";
import { ConversationPage, SessionLayout } from "./pages/session.tsx";
import { SessionsPage } from "./pages/sessions.tsx";
import { TerminalPage } from "./pages/terminal.tsx";
import { preloadMarkdown } from "./session/lazy-markdown.tsx";
import "./styles.css";
import { useActivity, useActivityConnection } from "./use-activity.ts";

// Any 401 means the cookie session ended (expired, logged out, token revoked): go log in again.
const queryClient = new QueryClient({
  queryCache: new QueryCache({
    onError: (e) => {
      if (isUnauthorized(e) && window.location.pathname !== "/login") void router.navigate({ to: "/login" });
    },
  }),
  defaultOptions: { queries: { retry: (n, e) => !isUnauthorized(e) && n < 2, refetchOnWindowFocus: true } },
});

// UI paths are short and never an API path's first segment (/sessions, /tasks, /webhooks are the
// API's), so a deep link typed into the address bar gets the UI and an API GET still gets JSON.
const NAV = [
  ["/", "Overview"],
  ["/s", "Sessions"],
  ["/t", "Tasks"],
  ["/u", "Usage"],
  ["/hooks", "Webhooks"],
  ["/settings", "Settings"],
] as const;

// The content column takes the window's width (diffs and logs need it) up to a very wide screen,
// with padding that grows with the window.
const COLUMN = "mx-auto w-full max-w-[120rem] px-4 sm:px-6 lg:px-8";

function Shell() {
  const path = useRouterState({ select: (s) => s.location.pathname });
  const navigate = useNavigate();
  useActivity(path !== "/login");
  const feed = useActivityConnection();
  const logout = async () => {
    await api.auth.logout().catch(() => {});
    queryClient.clear();
    await navigate({ to: "/login" });
  };
  return (
    <div className="min-h-dvh">
      <header className="border-b border-stone-200 bg-white/80 backdrop-blur dark:border-stone-800 dark:bg-stone-900/80">
        <div className={`${COLUMN} flex flex-wrap items-center gap-x-4 gap-y-2 py-3`}>
          <Link to="/" className="font-semibold tracking-tight">
            Flotilla
          </Link>
          {path !== "/login" && (
            <>
              <nav
                aria-label="Main"
                // On a phone the links take a row of their own under the name, so none is cut off.
                className="order-last flex basis-full items-center gap-4 overflow-x-auto text-sm sm:order-none sm:min-w-0 sm:flex-1 sm:basis-auto"
              >
                {NAV.map(([to, label]) => (
                  <Link
                    key={to}
                    to={to}
                    activeOptions={{ exact: to === "/" }}
                    className="shrink-0 text-stone-600 hover:text-stone-900 dark:text-stone-400 dark:hover:text-white"
                    activeProps={{ className: "font-medium !text-stone-900 dark:!text-white" }}
                  >
                    {label}
                  </Link>
                ))}
              </nav>
              {feed === "reconnecting" && (
                <span
                  role="status"
                  className="ml-auto shrink-0 sm:ml-0 text-xs font-medium text-amber-700 dark:text-amber-300"
                >
                  Reconnecting…
                </span>
              )}
              <button
                type="button"
                onClick={logout}
                className="ml-auto shrink-0 text-sm text-stone-500 hover:text-stone-900 dark:hover:text-white"
              >
                Log out
              </button>
            </>
          )}
        </div>
      </header>
      <main className={`${COLUMN} py-6`}>
        <Outlet />
      </main>
    </div>
  );
}

// Each page's code is loaded when it is first visited (the session page, the most opened, ships in
// the main bundle), so a link to one page does not download all the others.
const OverviewPage = lazyRouteComponent(() => import("./pages/overview.tsx"), "OverviewPage");
const TasksPage = lazyRouteComponent(() => import("./pages/tasks.tsx"), "TasksPage");
const TaskPage = lazyRouteComponent(() => import("./pages/tasks.tsx"), "TaskPage");
const WebhooksPage = lazyRouteComponent(() => import("./pages/webhooks.tsx"), "WebhooksPage");
const WebhookPage = lazyRouteComponent(() => import("./pages/webhooks.tsx"), "WebhookPage");
const SettingsPage = lazyRouteComponent(() => import("./pages/settings.tsx"), "SettingsPage");
const UsagePage = lazyRouteComponent(() => import("./pages/usage.tsx"), "UsagePage");
const SecretsPage = lazyRouteComponent(() => import("./pages/secrets.tsx"), "SecretsPage");
const AuditPage = lazyRouteComponent(() => import("./pages/audit.tsx"), "AuditPage");
const ChangesPage = lazyRouteComponent(() => import("./pages/changes.tsx"), "ChangesPage");

const rootRoute = createRootRoute({
  component: Shell,
  // No CSRF cookie means no browser session at all: go to the login form without first asking the
  // server (and logging a 401). A session that ended server-side is caught by the 401 handler above.
  beforeLoad: ({ location }) => {
    if (location.pathname !== "/login" && !hasSessionCookie()) throw redirect({ to: "/login" });
  },
});
const sessionRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/s/$id",
  component: SessionLayout,
});
const routeTree = rootRoute.addChildren([
  createRoute({ getParentRoute: () => rootRoute, path: "/", component: OverviewPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/login", component: LoginPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/s", component: SessionsPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/t", component: TasksPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/t/$id", component: TaskPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/u", component: UsagePage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/hooks", component: WebhooksPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/hooks/$id", component: WebhookPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/settings", component: SettingsPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/settings/secrets", component: SecretsPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/settings/audit", component: AuditPage }),
  sessionRoute.addChildren([
    createRoute({ getParentRoute: () => sessionRoute, path: "/", component: ConversationPage }),
    createRoute({ getParentRoute: () => sessionRoute, path: "/changes", component: ChangesPage }),
    createRoute({ getParentRoute: () => sessionRoute, path: "/terminal", component: TerminalPage }),
  ]),
]);

const router = createRouter({ routeTree, defaultPreload: false });

declare module "@tanstack/react-router" {
  interface Register {
    router: typeof router;
  }
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <RouterProvider router={router} />
    </QueryClientProvider>
  </StrictMode>,
);

// Once the first frame is painted, fetch the markdown stack that conversations render with.
requestAnimationFrame(() => setTimeout(preloadMarkdown, 0));
