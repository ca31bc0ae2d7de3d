// Every stored plugin by content id: kind, size, source languages, and the DAG versions that pin it.
import "./panels.css";
import { useMemo } from "preact/hooks";
import { enc, get, query } from "../api.js";
import { ErrorBox, Loading, useAsync } from "../components.jsx";
import { bytes, shortId, time } from "../format.js";
import { Link, setParams } from "../router.jsx";
import { CopyId } from "./task.jsx";

/** The list: each plugin with its languages and the versions that pin it. */
async function loadPlugins() {
  return (await get("/api/v1/plugins")).items || [];
}

export function Plugins({ params }) {
  const plugins = useAsync(loadPlugins, []);
  const search = params?.get("q") || "";
  const kind = params?.get("kind") || "";
  const items = plugins.data || [];
  const kinds = useMemo(() => [...new Set(items.map((p) => p.kind))].sort(), [items]);
  const q = search.trim().toLowerCase();
  const shown = items.filter(
    (p) =>
      (!kind || p.kind === kind) &&
      (!q || p.id.toLowerCase().includes(q) || (p.languages || []).some((l) => l.toLowerCase().includes(q)) || (p.used_by || []).some((u) => u.dag_id.toLowerCase().includes(q))),
  );
  return (
    <main class="page" id="plugins-page" data-ready={plugins.data || plugins.error ? "true" : "false"}>
      <div class="page-head">
        <h1>Plugins</h1>
        <span class="muted">{plugins.data ? `${items.length} stored, each by the SHA-256 of its bytes` : ""}</span>
      </div>
      <div class="forms">
        <label>
          Search
          <input
            id="plugins-search"
            type="search"
            value={search}
            placeholder="id, language or DAG"
            data-tip="Filter by plugin id, language or the DAG that uses it"
            onInput={(e) => setParams({ q: e.currentTarget.value })}
          />
        </label>
        <label>
          Kind
          <select id="plugins-kind" value={kind} onChange={(e) => setParams({ kind: e.currentTarget.value })} data-tip="Show only plugins of this kind">
            <option value="">any</option>
            {kinds.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBox error={plugins.error} />
      {!plugins.data && plugins.loading ? <Loading what="Loading the plugins" /> : null}
      {plugins.data ? (
        <table class="data" id="plugins">
          <thead>
            <tr>
              <th>Id</th>
              <th>Kind</th>
              <th class="num">Size</th>
              <th>Languages</th>
              <th>First stored</th>
              <th>Used by</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((p) => (
              <tr key={p.id} class="plugin-row" data-plugin-id={p.id}>
                <td>
                  <CopyId id={p.id} />
                </td>
                <td>{p.kind}</td>
                <td class="num">{bytes(p.size)}</td>
                <td>
                  {p.languages?.length ? (
                    p.languages.map((l) => (
                      <span class="lang" key={l}>
                        {l}
                      </span>
                    ))
                  ) : (
                    <span class="muted" data-tip={p.languages ? "The module does not say what it was written in" : "This server does not report languages"}>
                      –
                    </span>
                  )}
                </td>
                <td>{time(p.created_at)}</td>
                <td class="plugins-used">
                  {p.used_by === undefined ? (
                    <span class="muted">–</span>
                  ) : p.used_by.length ? (
                    p.used_by.map((u) => (
                      <Link key={u.dag_id + u.version} href={`/dags/${enc(u.dag_id)}/code` + query({ version: u.version })} data-tip={`${u.dag_id}, version ${u.version}`}>
                        <span class="mono">{u.dag_id}</span> <span class="muted mono">@{shortId(u.version)}</span>
                      </Link>
                    ))
                  ) : (
                    <span class="muted">no DAG version pins it</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {plugins.data && !shown.length ? <p class="empty">{items.length ? "No plugin matches." : "No plugin is stored yet: push a bundle."}</p> : null}
    </main>
  );
}
