// The trigger dialog: a run of one DAG now, with its conf (JSON, checked as it is typed), a note,
// and the version it runs: the active one, a given version, or the newest version of an
// experiment. Used by the DAG list and the DAG page; the API's refusal is shown in the dialog.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { enc, get, post } from "../api.js";
import { Button, Modal, toast, useAsync } from "../components.jsx";
import { time } from "../format.js";
import { shortVersion } from "./dags.jsx";

/** The DAG's versions (newest first) and its experiments, for the version picker. */
async function loadChoices(dagId) {
  const [dag, experiments] = await Promise.all([
    get(`/api/v1/dags/${enc(dagId)}`),
    get(`/api/v1/dags/${enc(dagId)}/experiments`).catch(() => []),
  ]);
  const versions = [...(dag?.versions || [])].sort((a, b) => String(b.created_at || "").localeCompare(String(a.created_at || "")));
  return { versions, experiments: experiments.items };
}

/** What the conf text says: `{value}` when it is a JSON object, else `{error}` with the parser's message. */
function parseConf(text) {
  if (!text.trim()) return { value: {} };
  try {
    const value = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) return { error: "The conf must be a JSON object, like {\"key\": \"value\"}." };
    return { value };
  } catch (e) {
    return { error: e.message };
  }
}

/** The value of the version picker: "" (active), `v:VERSION` or `e:EXPERIMENT`. */
function versionOptions(choices) {
  const options = [{ value: "", label: "active version" }];
  for (const v of choices?.versions || []) {
    options.push({ value: "v:" + v.version, label: `${shortVersion(v.version)} — ${time(v.created_at)}${v.is_active ? " — active" : ""}` });
  }
  for (const e of choices?.experiments || []) {
    if (e?.name) options.push({ value: "e:" + e.name, label: `experiment: ${e.name} (newest)` });
  }
  return options;
}

/** The request body of the trigger, from the form's values. */
function triggerBody(conf, note, choice) {
  const body = { conf };
  if (note.trim()) body.note = note.trim();
  if (choice.startsWith("v:")) body.dag_version = choice.slice(2);
  if (choice.startsWith("e:")) body.experiment = choice.slice(2);
  return body;
}

export function TriggerDialog({ dagId, onClose, onTriggered }) {
  const [confText, setConfText] = useState("{}");
  const [note, setNote] = useState("");
  const [choice, setChoice] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const choices = useAsync(() => loadChoices(dagId), [dagId]);
  const parsed = useMemo(() => parseConf(confText), [confText]);
  const options = versionOptions(choices.data);
  const confRef = useRef(null);
  // The conf gets the focus once the Modal has placed it (the Modal's own effect runs after ours).
  useEffect(() => {
    const t = setTimeout(() => confRef.current?.focus(), 0);
    return () => clearTimeout(t);
  }, []);

  const submit = async (e) => {
    e?.preventDefault();
    if (parsed.error || busy) return;
    setBusy(true);
    setError(null);
    try {
      const run = await post(`/api/v1/dags/${enc(dagId)}/runs`, triggerBody(parsed.value, note, choice));
      toast(`Run ${run?.run_id} triggered${run?.dag_paused ? " (the DAG is paused: it waits until it is unpaused)" : ""}`, "success");
      onTriggered?.(run);
      onClose?.();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <Modal title={`Trigger ${dagId}`} onClose={onClose} id="trigger-dialog">
      <form class="trigger-form" onSubmit={submit}>
        <label for="trigger-conf">
          Conf <small>a JSON object, given to the run's tasks</small>
        </label>
        <textarea
          id="trigger-conf"
          ref={confRef}
          rows={8}
          spellcheck={false}
          class={parsed.error ? "invalid" : ""}
          aria-invalid={parsed.error ? "true" : "false"}
          aria-describedby="trigger-conf-error"
          value={confText}
          onInput={(e) => setConfText(e.currentTarget.value)}
        />
        <div id="trigger-conf-error" role="alert" class="field-error">
          {parsed.error || ""}
        </div>
        <label>
          Note <small>why this run, shown with it</small>
          <input id="trigger-note" type="text" value={note} onInput={(e) => setNote(e.currentTarget.value)} />
        </label>
        <label>
          Version <small>the DAG version the run runs</small>
          <select id="trigger-version" value={choice} onChange={(e) => setChoice(e.currentTarget.value)} data-tip="The active version (the schedule's), another version, or an experiment's newest version">
            {options.map((o) => (
              <option key={o.value} value={o.value}>
                {o.label}
              </option>
            ))}
          </select>
        </label>
        {choices.error ? <p class="muted">Could not load the versions ({choices.error.message}): the active version is used.</p> : null}
        {error ? (
          <div id="trigger-error" class="error-box" role="alert">
            <strong>{error.message}</strong>
            {error.code ? <span class="error-code"> ({error.code})</span> : null}
          </div>
        ) : null}
        <footer class="modal-foot">
          <Button id="trigger-cancel" tip="Close without triggering (Esc)" onClick={onClose}>
            Cancel
          </Button>
          <button
            type="submit"
            class="btn btn-primary"
            id="trigger-submit"
            disabled={!!parsed.error || busy}
            data-tip={parsed.error ? "Fix the conf first: it must be a JSON object" : `Create a run of ${dagId} now`}
          >
            {busy ? "Triggering…" : "Trigger"}
          </button>
        </footer>
      </form>
    </Modal>
  );
}
