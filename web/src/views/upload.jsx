// Push a bundle (.tar.gz, .tgz or .zip of DAG files and plugins): drop it or pick it, check it
// with a dry run (every diagnostic, or what would be stored), then store it for real.
import "./panels.css";
import { useEffect, useRef, useState } from "preact/hooks";
import { call, enc, query } from "../api.js";
import { Button, ErrorBox, toast } from "../components.jsx";
import { bytes, shortId } from "../format.js";
import { Link } from "../router.jsx";
import { atLeast, useSession } from "../session.js";

function contentTypeOf(name) {
  const n = name.toLowerCase();
  if (n.endsWith(".tar.gz") || n.endsWith(".tgz")) return "application/gzip";
  if (n.endsWith(".zip")) return "application/zip";
  return null;
}

function where(d) {
  if (!d.file) return "the archive";
  let s = d.file;
  if (d.line) s += ":" + d.line;
  if (d.line && d.column) s += ":" + d.column;
  return s;
}

function Diagnostics({ diagnostics }) {
  return (
    <ul class="diag-list" id="upload-diagnostics">
      {diagnostics.map((d, i) => (
        <li class="diagnostic" key={i} data-code={d.code || ""}>
          <span class="where">{where(d)}</span> <span class="code">{d.code}</span>
          {d.field ? (
            <>
              {" "}
              field <code>{d.field}</code>
            </>
          ) : null}
          : <span class="message">{d.message}</span>
        </li>
      ))}
    </ul>
  );
}

function ignoredReason(reason) {
  if (reason === null || reason === undefined) return "";
  return typeof reason === "string" ? reason.replace(/_/g, " ") : JSON.stringify(reason);
}

/** What a push stored, or (dry run) would store. */
function Stored({ report, dry }) {
  const dags = report.dags || [];
  const plugins = report.plugins || [];
  const ignored = report.ignored || [];
  return (
    <>
      <h3>
        {dags.length} DAG{dags.length === 1 ? "" : "s"}
      </h3>
      {dags.length ? (
        <table class="data" id={dry ? "upload-dags" : "upload-stored-dags"}>
          <thead>
            <tr>
              <th>DAG</th>
              <th>File</th>
              <th>Version</th>
              <th>Tasks</th>
              <th>{dry ? "Would be" : "Is"}</th>
            </tr>
          </thead>
          <tbody>
            {dags.map((d) => (
              <tr key={d.file} class="upload-dag" data-dag-id={d.dag_id}>
                <td>
                  {dry && d.new_dag ? (
                    <span class="mono">{d.dag_id}</span>
                  ) : (
                    <Link href={`/dags/${enc(d.dag_id)}`} class="mono dag-result-link">
                      {d.dag_id}
                    </Link>
                  )}
                  {d.new_dag ? <span class="tag-new">new DAG</span> : null}
                </td>
                <td class="mono">{d.file}</td>
                <td class="mono">
                  {shortId(d.version)}
                  {d.new_version ? <span class="tag-new">new version</span> : <span class="tag-same">known</span>}
                </td>
                <td class="num">{d.tasks}</td>
                <td>
                  {d.experiment
                    ? `in experiment ${d.experiment}`
                    : d.activated
                      ? dry
                        ? "activated"
                        : "active now"
                      : d.new_version
                        ? "stored, not active"
                        : "unchanged"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p class="muted">No DAG file (*.toml at the top level) in this bundle.</p>
      )}
      <h3>
        {plugins.length} plugin{plugins.length === 1 ? "" : "s"}
      </h3>
      {plugins.length ? (
        <table class="data" id={dry ? "upload-plugins" : "upload-stored-plugins"}>
          <thead>
            <tr>
              <th>Path</th>
              <th>Id</th>
              <th>Kind</th>
              <th class="num">Size</th>
            </tr>
          </thead>
          <tbody>
            {plugins.map((p) => (
              <tr key={p.path}>
                <td class="mono">{p.path}</td>
                <td class="mono" data-tip={p.plugin_id}>
                  {shortId(p.plugin_id)}
                  {p.new ? <span class="tag-new">new</span> : <span class="tag-same">known</span>}
                </td>
                <td>{p.kind}</td>
                <td class="num">{bytes(p.size)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {ignored.length ? (
        <>
          <h3>{ignored.length} ignored</h3>
          <ul id="upload-ignored">
            {ignored.map((f) => (
              <li key={f.path}>
                <code>{f.path}</code> <span class="muted">({bytes(f.size)}) {ignoredReason(f.reason)}</span>
              </li>
            ))}
          </ul>
        </>
      ) : null}
    </>
  );
}

export function Upload() {
  const me = useSession();
  const canPush = atLeast("author", me);
  const isAdmin = atLeast("admin", me);
  const [file, setFile] = useState(null);
  const [over, setOver] = useState(false);
  const [experiment, setExperiment] = useState("");
  const [note, setNote] = useState("");
  const [noActivate, setNoActivate] = useState(false);
  const [check, setCheck] = useState(null); // {ok, report} | {ok: false, diagnostics, error}
  const [checking, setChecking] = useState(false);
  const [storing, setStoring] = useState(false);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const input = useRef(null);
  const generation = useRef(0);

  const params = (dry) => query({ dry_run: dry ? "true" : undefined, experiment: experiment.trim() || undefined, note: note.trim() || undefined, no_activate: noActivate ? "true" : undefined });

  const dryRun = async (f = file) => {
    if (!f) return;
    const type = contentTypeOf(f.name);
    const mine = ++generation.current;
    setError(null);
    setResult(null);
    if (!type) {
      setCheck(null);
      setError({ message: `${f.name}: not a .tar.gz, .tgz or .zip`, code: "unsupported file" });
      return;
    }
    setChecking(true);
    try {
      const report = await call("POST", "/api/v1/bundles" + params(true), f, { contentType: type });
      if (mine === generation.current) setCheck({ ok: true, report });
    } catch (e) {
      if (mine !== generation.current) return;
      if (e.status === 422 && Array.isArray(e.body?.diagnostics)) setCheck({ ok: false, diagnostics: e.body.diagnostics, error: e });
      else setCheck({ ok: false, diagnostics: [], error: e });
    } finally {
      if (mine === generation.current) setChecking(false);
    }
  };

  // A changed experiment or activation changes what a push would do: check again.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    if (!file || result) return;
    const t = setTimeout(() => dryRun(), 500);
    return () => clearTimeout(t);
  }, [experiment, noActivate]);

  const choose = (f) => {
    if (!f) return;
    setFile(f);
    setCheck(null);
    setResult(null);
    dryRun(f);
  };

  const store = async () => {
    if (!file) return;
    setStoring(true);
    setError(null);
    try {
      const report = await call("POST", "/api/v1/bundles" + params(false), file, { contentType: contentTypeOf(file.name) });
      setResult(report);
      setCheck(null);
      toast(`Stored ${file.name}: ${(report.dags || []).length} DAG(s), ${(report.plugins || []).length} plugin(s)`, "success");
    } catch (e) {
      if (e.status === 422 && Array.isArray(e.body?.diagnostics)) setCheck({ ok: false, diagnostics: e.body.diagnostics, error: e });
      else setError(e);
    } finally {
      setStoring(false);
    }
  };

  const cancel = () => {
    generation.current++;
    setFile(null);
    setCheck(null);
    setResult(null);
    setError(null);
    setChecking(false);
    if (input.current) input.current.value = "";
  };

  if (!canPush)
    return (
      <main class="page" id="upload-page" data-ready="true">
        <h1>Upload a bundle</h1>
        <p>Your role ({me?.role}) may not push bundles: ask for the author role or more.</p>
      </main>
    );

  const onDrop = (e) => {
    e.preventDefault();
    setOver(false);
    choose(e.dataTransfer?.files?.[0]);
  };

  return (
    <main class="page" id="upload-page" data-ready="true">
      <h1>Upload a bundle</h1>
      <p class="muted">
        A <code>.tar.gz</code>, <code>.tgz</code> or <code>.zip</code> of DAG files (<code>*.toml</code> at the top level) and plugins (<code>*.wasm</code>). It is checked first
        without storing anything; then you store it.
      </p>
      <div
        id="upload-drop"
        class={`drop-zone${over ? " over" : ""}`}
        tabIndex={0}
        role="button"
        data-tip="Drop a bundle here, or press Enter to pick one"
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragEnter={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={onDrop}
        onClick={(e) => e.target === e.currentTarget && input.current?.click()}
        onKeyDown={(e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), input.current?.click())}
      >
        <div>Drop a bundle here or</div>
        <label class="inline upload-pick">
          <input
            type="file"
            id="upload-file"
            ref={input}
            accept=".tar.gz,.tgz,.zip,application/gzip,application/zip"
            onChange={(e) => choose(e.currentTarget.files?.[0])}
            aria-label="Pick a bundle file"
          />
        </label>
        {file ? (
          <div class="file-name" id="upload-file-name">
            {file.name} ({bytes(file.size)})
          </div>
        ) : null}
      </div>
      <div class="upload-fields">
        <label data-tip="Push the versions into this experiment: never scheduled nor active, run by triggers only (the DAG must be on the server already)">
          Experiment <small>optional</small>
          <input id="upload-experiment" value={experiment} onInput={(e) => setExperiment(e.currentTarget.value)} placeholder="e.g. faster-parser" />
        </label>
        <label data-tip="Kept with the experiment's versions">
          Note <small>optional</small>
          <input id="upload-note" value={note} onInput={(e) => setNote(e.currentTarget.value)} placeholder="what changed" />
        </label>
        <label class="check" data-tip={isAdmin ? "Store the new versions without making them the active ones" : "Only an admin's push activates versions: yours keeps each DAG's active version anyway (a new DAG's first version is active)"}>
          <input type="checkbox" id="upload-no-activate" checked={noActivate || !isAdmin} disabled={!isAdmin} onChange={(e) => setNoActivate(e.currentTarget.checked)} /> Do not activate the new versions
        </label>
      </div>
      <ErrorBox error={error} />
      {checking ? (
        <p class="muted" id="upload-checking" aria-busy="true">
          Checking {file?.name}…
        </p>
      ) : null}
      {check && !checking ? (
        <section class="panel" id="upload-report" data-ok={check.ok ? "true" : "false"}>
          {check.ok ? (
            <>
              <h2>✓ The bundle passes every check</h2>
              <p class="muted">Nothing is stored yet. This is what storing it would do:</p>
              <Stored report={check.report} dry />
            </>
          ) : check.diagnostics?.length ? (
            <>
              <h2>
                ✕ Refused: {check.diagnostics.length} problem{check.diagnostics.length === 1 ? "" : "s"}
              </h2>
              <p class="muted">Nothing would be stored. Fix these and drop the bundle again.</p>
              <Diagnostics diagnostics={check.diagnostics} />
            </>
          ) : (
            <>
              <h2>✕ The check failed</h2>
              <ErrorBox error={check.error} />
            </>
          )}
          <div class="row upload-buttons">
            <Button
              id="upload-store"
              primary
              disabled={storing || !check.ok}
              tip={check.ok ? "Store this bundle for real: the versions and plugins listed above" : "Fix the problems first"}
              onClick={store}
            >
              {storing ? "Storing…" : "Store it"}
            </Button>
            <Button id="upload-recheck" tip="Check the same file again" onClick={() => dryRun()} disabled={checking || storing}>
              Check again
            </Button>
            <Button id="upload-cancel" tip="Forget this file: nothing is stored" onClick={cancel} disabled={storing}>
              Cancel
            </Button>
          </div>
        </section>
      ) : null}
      {result ? (
        <section class="panel" id="upload-result">
          <h2>✓ Stored {file?.name}</h2>
          <Stored report={result} dry={false} />
          <div class="row">
            {(result.dags || []).map((d) => (
              <Link key={d.dag_id} href={`/dags/${enc(d.dag_id)}`} class="btn" data-tip={`Open ${d.dag_id}`}>
                Open {d.dag_id}
              </Link>
            ))}
            <Button id="upload-another" tip="Push another bundle" onClick={cancel}>
              Upload another
            </Button>
          </div>
        </section>
      ) : null}
    </main>
  );
}
