import "./zod-jitless.ts";
import { QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import {
  createRootRoute,
  createRoute,
  createRouter,
  Link,
  Outlet,
  RouterProvider,
  redirect,
  useNavigate,
  useRouterState,
} from "@tanstack/react-router";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { api, hasSessionCookie, isUnauthorized } from "./api.ts";
import { ChangesPage } from "./pages/changes.tsx";
import { LoginPage } from "./pages/login.tsx";
import { ConversationPage, SessionLayout } from "./pages/session.tsx";
import { SessionsPage } from "./pages/sessions.tsx";
import "./styles.css";

// Any 401 means the cookie session ended (expired, logged out, token revoked): go log in again.
const queryClient = new QueryClient({
  queryCache: new QueryCache({
    onError: (e) => {
      if (isUnauthorized(e) && window.location.pathname !== "/login") void router.navigate({ to: "/login" });
    },
  }),
  defaultOptions: { queries: { retry: (n, e) => !isUnauthorized(e) && n < 2, refetchOnWindowFocus: true } },
});

function Shell() {
  const path = useRouterState({ select: (s) => s.location.pathname });
  const navigate = useNavigate();
  const logout = async () => {
    await api.auth.logout().catch(() => {});
    queryClient.clear();
    await navigate({ to: "/login" });
  };
  return (
    <div className="min-h-dvh">
      <header className="border-b border-stone-200 bg-white/80 backdrop-blur dark:border-stone-800 dark:bg-stone-900/80">
        <div className="mx-auto flex max-w-5xl items-center gap-4 px-4 py-3">
          <Link to="/" className="font-semibold tracking-tight">
            Flotilla
          </Link>
          {path !== "/login" && (
            <>
              <Link
                to="/"
                className="text-sm text-stone-600 hover:text-stone-900 dark:text-stone-400 dark:hover:text-white"
              >
                Sessions
              </Link>
              <button
                type="button"
                onClick={logout}
                className="ml-auto text-sm text-stone-500 hover:text-stone-900 dark:hover:text-white"
              >
                Log out
              </button>
            </>
          )}
        </div>
      </header>
      <main className="mx-auto max-w-5xl px-4 py-6">
        <Outlet />
      </main>
    </div>
  );
}

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
  createRoute({ getParentRoute: () => rootRoute, path: "/", component: SessionsPage }),
  createRoute({ getParentRoute: () => rootRoute, path: "/login", component: LoginPage }),
  sessionRoute.addChildren([
    createRoute({ getParentRoute: () => sessionRoute, path: "/", component: ConversationPage }),
    createRoute({ getParentRoute: () => sessionRoute, path: "/changes", component: ChangesPage }),
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
