// The app: the login, then a header (views, who is logged in, log out) and the view of the path.
import "./app.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { get, setToken, token, whenUnauthenticated } from "./api.js";
import { ConfirmHost, Loading, ToastHost } from "./components.jsx";
import { disconnect } from "./live.js";
import { Link, navigate, useRoute } from "./router.jsx";
import { atLeast, setSession, useSession } from "./session.js";
import { Login } from "./views/login.jsx";
import { DagList } from "./views/dags.jsx";
import { DagPage } from "./views/dag.jsx";
import { RunPage } from "./views/run.jsx";
import { ComparePage } from "./views/compare.jsx";
import { Plugins } from "./views/plugins.jsx";
import { Upload } from "./views/upload.jsx";
import { Admin } from "./views/admin.jsx";

/** The view of a path: `/`, `/dags/ID[/TAB]`, `/runs/ID`, `/compare`, `/plugins`, `/upload`, `/admin[/TAB]`. */
function View({ route }) {
  const [first, second, third] = route.segments;
  switch (first) {
    case undefined:
    case "dags":
      return second ? <DagPage dagId={second} tab={third || "graph"} params={route.params} /> : <DagList params={route.params} />;
    case "runs":
      return <RunPage runId={second} params={route.params} />;
    case "compare":
      return <ComparePage params={route.params} />;
    case "plugins":
      return <Plugins params={route.params} />;
    case "upload":
      return <Upload />;
    case "admin":
      return <Admin tab={second || "users"} params={route.params} />;
    default:
      return (
        <main class="page">
          <h1>Not found</h1>
          <p>
            Nothing is at <code>{route.path}</code>. <Link href="/">Back to the DAGs</Link>
          </p>
        </main>
      );
  }
}

function Header({ me, onLogout, route }) {
  const section = route.segments[0] || "dags";
  const nav = [
    ["dags", "/", "DAGs", "Every DAG, its last runs and import errors"],
    ["plugins", "/plugins", "Plugins", "Every plugin by content id, and the DAG versions that use it"],
    ["upload", "/upload", "Upload", "Push a bundle of DAG files and plugins"],
  ];
  if (atLeast("admin", me)) nav.push(["admin", "/admin", "Admin", "Users, tokens, pools and the audit log"]);
  return (
    <header class="topbar">
      <Link href="/" class="brand" data-tip="Sandflow: the DAG list">
        <span class="logo" aria-hidden="true">◇</span> Sandflow
      </Link>
      <nav class="mainnav" aria-label="Views">
        {nav.map(([key, href, label, tip]) => (
          <Link key={key} href={href} class={section === key || (key === "dags" && (section === "runs" || section === "compare")) ? "active" : ""} data-tip={tip} id={`nav-${key}`}>
            {label}
          </Link>
        ))}
      </nav>
      <span class="spacer" />
      <span id="whoami" class="whoami" data-tip={`Logged in as ${me.name}, role ${me.role}`}>
        {me.name} ({me.role})
      </span>
      <button type="button" class="btn" id="logout" data-tip="Log out: forget this browser's token" onClick={onLogout}>
        Log out
      </button>
    </header>
  );
}

function App() {
  const me = useSession();
  const route = useRoute();
  const [checking, setChecking] = useState(!!token());

  useEffect(() => {
    const off = whenUnauthenticated(() => {
      setToken(null);
      disconnect();
      setSession(null);
    });
    if (token()) {
      get("/api/v1/me")
        .then(setSession)
        .catch(() => setToken(null))
        .finally(() => setChecking(false));
    }
    return off;
  }, []);

  const logout = async () => {
    try {
      await fetch("/api/v1/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + token() } });
    } catch {}
    setToken(null);
    disconnect();
    setSession(null);
    navigate("/", { replace: true });
  };

  if (checking) return <Loading what="Checking your token" />;
  if (!me) return <Login onLoggedIn={setSession} />;
  return (
    <>
      <Header me={me} onLogout={logout} route={route} />
      <View route={route} />
      <ConfirmHost />
      <ToastHost />
    </>
  );
}

render(<App />, document.getElementById("app"));
