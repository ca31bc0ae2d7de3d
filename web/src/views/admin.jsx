// Admin: users (add, role, disable), tokens (create: the secret once; revoke), pools (slots),
// the audit log (filters, older pages) and daily fuel budgets. Every change asks first.
import "./panels.css";
import { useEffect, useState } from "preact/hooks";
import { del, enc, get, patch, post, put, query } from "../api.js";
import { Button, ErrorBox, Loading, Tabs, confirm, toast, useAsync } from "../components.jsx";
import { fuel, time } from "../format.js";
import { Link, setParams } from "../router.jsx";
import { atLeast, useSession } from "../session.js";

const ROLES = ["viewer", "author", "operator", "admin"];
const ROLE_WORDS = {
  viewer: "reads everything, changes nothing",
  author: "also pushes bundles and runs their own experiments",
  operator: "also triggers, clears, marks, pauses and backfills any DAG",
  admin: "also manages users, tokens, budgets, pools and activates versions",
};

/** Runs a change, toasts how it went; answers whether it worked. */
async function attempt(fn, done) {
  try {
    await fn();
    if (done) toast(done, "success");
    return true;
  } catch (e) {
    toast(e.message, "error");
    return false;
  }
}

function Users({ onReady }) {
  const me = useSession();
  const users = useAsync(() => get("/api/v1/users"), []);
  useReady(onReady, users);
  const [name, setName] = useState("");
  const [role, setRole] = useState("viewer");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const add = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await post("/api/v1/users", { name: name.trim(), role, password: password || undefined });
      toast(`Added ${name.trim()} (${role})`, "success");
      setName("");
      setPassword("");
      users.reload();
    } catch (err) {
      setError(err);
    }
  };
  const changeRole = async (u, next, select) => {
    const ok = await confirm({
      title: `Make ${u.name} ${next}?`,
      body: (
        <p>
          <code>{u.name}</code> goes from {u.role} to <strong>{next}</strong>: {ROLE_WORDS[next]}. It takes effect on their next request, with every token they have.
        </p>
      ),
      action: `Make ${next}`,
      danger: true,
    });
    if (!ok) {
      select.value = u.role;
      return;
    }
    if (!(await attempt(() => patch(`/api/v1/users/${enc(u.name)}`, { role: next }), `${u.name} is now ${next}`))) select.value = u.role;
    users.reload();
  };
  const toggle = async (u) => {
    const disabling = !u.disabled;
    const ok = await confirm({
      title: `${disabling ? "Disable" : "Enable"} ${u.name}?`,
      body: disabling ? (
        <p>
          <code>{u.name}</code> can no longer log in, and every token of theirs is refused from the next request on. Their runs and history stay.
        </p>
      ) : (
        <p>
          <code>{u.name}</code> can log in again, and their tokens that are neither expired nor revoked work again.
        </p>
      ),
      action: disabling ? "Disable" : "Enable",
      danger: disabling,
    });
    if (!ok) return;
    await attempt(() => patch(`/api/v1/users/${enc(u.name)}`, { disabled: disabling }), `${u.name} ${disabling ? "disabled" : "enabled"}`);
    users.reload();
  };
  return (
    <section>
      <form class="forms" onSubmit={add} id="user-add">
        <label>
          Name
          <input id="user-add-name" value={name} onInput={(e) => setName(e.currentTarget.value)} required data-tip="The user's name: what runs and the audit log record" />
        </label>
        <label>
          Role
          <select id="user-add-role" value={role} onChange={(e) => setRole(e.currentTarget.value)} data-tip={ROLES.map((r) => `${r}: ${ROLE_WORDS[r]}`).join("\n")}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <label>
          Password <small>optional: without one, tokens only</small>
          <input id="user-add-password" type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        <Button type="submit" primary id="user-add-submit" tip="Add this user" disabled={!name.trim()}>
          Add user
        </Button>
      </form>
      <ErrorBox error={error} />
      <ErrorBox error={users.error} />
      {!users.data && users.loading ? <Loading what="Loading the users" /> : null}
      {users.data ? (
        <table class="data" id="users">
          <thead>
            <tr>
              <th>Name</th>
              <th>Role</th>
              <th>Status</th>
              <th>Password</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {users.data.items.map((u) => (
              <tr key={u.name} class={`user-row${u.disabled ? " disabled" : ""}`} data-user={u.name} data-role={u.role}>
                <td class="mono">
                  {u.name}
                  {me?.name === u.name ? <span class="muted"> (you)</span> : null}
                </td>
                <td>
                  <select class="user-role" value={u.role} aria-label={`Role of ${u.name}`} data-tip={`Change ${u.name}'s role (asks first)`} onChange={(e) => changeRole(u, e.currentTarget.value, e.currentTarget)}>
                    {ROLES.map((r) => (
                      <option key={r} value={r}>
                        {r}
                      </option>
                    ))}
                  </select>
                </td>
                <td>{u.disabled ? "⊘ disabled" : "✓ active"}</td>
                <td>{u.has_password ? "yes" : <span class="muted">tokens only</span>}</td>
                <td>{time(u.created_at)}</td>
                <td>
                  <Button class={`user-disable btn-small`} danger={!u.disabled} tip={u.disabled ? `Let ${u.name} log in again (asks first)` : `Refuse ${u.name}'s logins and tokens (asks first)`} onClick={() => toggle(u)}>
                    {u.disabled ? "Enable" : "Disable"}
                  </Button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

function Tokens({ params, onReady }) {
  const user = params?.get("user") || "";
  const tokens = useAsync(() => get("/api/v1/tokens" + query({ user })), [user]);
  const users = useAsync(() => get("/api/v1/users"), []);
  useReady(onReady, tokens);
  const [forUser, setForUser] = useState("");
  const [expires, setExpires] = useState("30d");
  const [purpose, setPurpose] = useState("");
  const [secret, setSecret] = useState(null);
  const [error, setError] = useState(null);
  const names = (users.data?.items || []).map((u) => u.name);
  const target = forUser || names[0] || "";
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const t = await post(`/api/v1/users/${enc(target)}/tokens`, { expires: expires.trim() || undefined, purpose: purpose.trim() || undefined });
      setSecret(t);
      tokens.reload();
    } catch (err) {
      setError(err);
    }
  };
  const revoke = async (t) => {
    const ok = await confirm({
      title: `Revoke ${t.id}?`,
      body: (
        <p>
          The token <code>{t.id}</code> of <code>{t.user_name}</code> ({t.purpose}) is refused from the next request on. Whatever uses it (a script, a browser) must log in again. This cannot be undone.
        </p>
      ),
      action: "Revoke",
      danger: true,
    });
    if (!ok) return;
    await attempt(() => del(`/api/v1/tokens/${enc(t.id)}`), `Revoked ${t.id}`);
    tokens.reload();
  };
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret.token);
      toast("Token copied", "success");
    } catch {
      toast("Could not copy: select it and copy it by hand", "error");
    }
  };
  return (
    <section>
      <form class="forms" onSubmit={create} id="token-create">
        <label>
          For user
          <select id="token-user" value={target} onChange={(e) => setForUser(e.currentTarget.value)} data-tip="Whose token it is: it has their role">
            {names.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <label>
          Expires after <small>30d, 12h; empty: until revoked</small>
          <input id="token-expires" value={expires} onInput={(e) => setExpires(e.currentTarget.value)} />
        </label>
        <label>
          Purpose <small>for the list</small>
          <input id="token-purpose" value={purpose} onInput={(e) => setPurpose(e.currentTarget.value)} placeholder="ci" />
        </label>
        <Button type="submit" primary id="token-create-submit" tip="Create a token: its secret is shown once, here" disabled={!target}>
          Create token
        </Button>
      </form>
      <ErrorBox error={error} />
      {secret ? (
        <div class="secret-box" role="status">
          <p>
            The token of <code>{secret.user}</code> ({secret.role}
            {secret.expires_at ? `, expires ${time(secret.expires_at)}` : ", until revoked"}). <strong>Copy it now: it is not shown again.</strong>
          </p>
          <div class="row">
            <code id="token-secret">{secret.token}</code>
            <Button id="token-copy" tip="Copy the secret" onClick={copy}>
              Copy
            </Button>
            <Button id="token-secret-hide" tip="Forget the secret on this page" onClick={() => setSecret(null)}>
              Done
            </Button>
          </div>
        </div>
      ) : null}
      <div class="forms">
        <label>
          Show tokens of
          <select id="tokens-filter-user" value={user} onChange={(e) => setParams({ user: e.currentTarget.value })} data-tip="List only this user's tokens">
            <option value="">every user</option>
            {names.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBox error={tokens.error} />
      {!tokens.data && tokens.loading ? <Loading what="Loading the tokens" /> : null}
      {tokens.data ? (
        <table class="data" id="tokens">
          <thead>
            <tr>
              <th>Id</th>
              <th>User</th>
              <th>Purpose</th>
              <th>Created</th>
              <th>Expires</th>
              <th>Revoked</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {tokens.data.items.map((t) => {
              const expired = t.expires_at && Date.parse(t.expires_at) < Date.now();
              return (
                <tr key={t.id} class={`token-row${t.revoked_at || expired ? " revoked" : ""}`} data-token-id={t.id}>
                  <td class="mono">{t.id}</td>
                  <td class="mono">{t.user_name}</td>
                  <td>{t.purpose}</td>
                  <td>{time(t.created_at)}</td>
                  <td>{t.expires_at ? `${time(t.expires_at)}${expired ? " (expired)" : ""}` : "never"}</td>
                  <td>{t.revoked_at ? time(t.revoked_at) : "–"}</td>
                  <td>
                    {!t.revoked_at ? (
                      <Button class="token-revoke btn-small" danger tip={`Revoke ${t.id} (asks first)`} onClick={() => revoke(t)}>
                        Revoke
                      </Button>
                    ) : null}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

function PoolRow({ p, onChanged }) {
  const [slots, setSlots] = useState(String(p.slots));
  const [description, setDescription] = useState(p.description || "");
  const dirty = slots !== String(p.slots) || description !== (p.description || "");
  const save = async () => {
    const n = Number(slots);
    if (!Number.isInteger(n) || n < 0) return toast("Slots: a whole number, 0 or more", "error");
    if (await attempt(() => put(`/api/v1/pools/${enc(p.name)}`, { slots: n, description: description || null }), `Pool ${p.name}: ${n} slots`)) onChanged();
  };
  const remove = async () => {
    const ok = await confirm({
      title: `Delete the pool ${p.name}?`,
      body: (
        <p>
          The pool <code>{p.name}</code> ({p.slots} slots) is deleted. Tasks that name it wait for a slot until a pool of that name exists again.
        </p>
      ),
      action: "Delete pool",
      danger: true,
    });
    if (ok && (await attempt(() => del(`/api/v1/pools/${enc(p.name)}`), `Deleted pool ${p.name}`))) onChanged();
  };
  return (
    <tr class="pool-row" data-pool={p.name}>
      <td class="mono">{p.name}</td>
      <td>
        <input class="slots-input pool-slots" type="number" min="0" value={slots} aria-label={`Slots of ${p.name}`} onInput={(e) => setSlots(e.currentTarget.value)} />
      </td>
      <td>
        <input class="pool-description" value={description} aria-label={`Description of ${p.name}`} onInput={(e) => setDescription(e.currentTarget.value)} />
      </td>
      <td>{time(p.updated_at)}</td>
      <td class="row">
        <Button class="pool-save btn-small" primary disabled={!dirty} tip={`Save ${p.name}'s slots and description`} onClick={save}>
          Save
        </Button>
        <Button class="pool-delete btn-small" danger tip={`Delete ${p.name} (asks first)`} onClick={remove}>
          Delete
        </Button>
      </td>
    </tr>
  );
}

function Pools({ onReady }) {
  const pools = useAsync(() => get("/api/v1/pools"), []);
  useReady(onReady, pools);
  const [name, setName] = useState("");
  const [slots, setSlots] = useState("4");
  const [description, setDescription] = useState("");
  const [error, setError] = useState(null);
  const add = async (e) => {
    e.preventDefault();
    setError(null);
    const n = Number(slots);
    if (!Number.isInteger(n) || n < 0) return setError({ message: "Slots: a whole number, 0 or more" });
    if ((pools.data?.items || []).some((p) => p.name === name.trim())) {
      const ok = await confirm({ title: `Change the pool ${name.trim()}?`, body: <p>A pool of that name exists: its slots become {n}.</p>, action: "Change it", danger: true });
      if (!ok) return;
    }
    try {
      await put(`/api/v1/pools/${enc(name.trim())}`, { slots: n, description: description.trim() || null });
      toast(`Pool ${name.trim()}: ${n} slots`, "success");
      setName("");
      setDescription("");
      pools.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <section>
      <form class="forms" onSubmit={add} id="pool-add">
        <label>
          Name <small>letters, digits, _ . -</small>
          <input id="pool-add-name" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
        </label>
        <label>
          Slots
          <input id="pool-add-slots" class="slots-input" type="number" min="0" value={slots} onInput={(e) => setSlots(e.currentTarget.value)} />
        </label>
        <label>
          Description
          <input id="pool-add-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </label>
        <Button type="submit" primary id="pool-add-submit" tip="Add this pool (or resize the one of that name)" disabled={!name.trim()}>
          Add pool
        </Button>
      </form>
      <ErrorBox error={error} />
      <ErrorBox error={pools.error} />
      {!pools.data && pools.loading ? <Loading what="Loading the pools" /> : null}
      {pools.data ? (
        <table class="data" id="pools">
          <thead>
            <tr>
              <th>Name</th>
              <th>Slots</th>
              <th>Description</th>
              <th>Updated</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {pools.data.items.map((p) => (
              <PoolRow key={p.name + p.updated_at} p={p} onChanged={() => pools.reload()} />
            ))}
          </tbody>
        </table>
      ) : null}
      {pools.data && !pools.data.items.length ? <p class="empty">No pool yet.</p> : null}
    </section>
  );
}

const AUDIT_PAGE = 100;

/** A text filter typed freely and applied to the address on Enter or when the field is left. */
function FilterInput({ id, value, name, ...rest }) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  const apply = () => text !== value && setParams({ [name]: text.trim() });
  return <input id={id} value={text} onInput={(e) => setText(e.currentTarget.value)} onChange={apply} onKeyDown={(e) => e.key === "Enter" && apply()} {...rest} />;
}

/** Tells the page once a tab has shown its first data (or its error). */
function useReady(onReady, result) {
  useEffect(() => {
    if (result.data || result.error) onReady();
  }, [!!(result.data || result.error)]);
}

function Audit({ params, onReady }) {
  const actor = params?.get("actor") || "";
  const action = params?.get("action") || "";
  const outcome = params?.get("outcome") || "";
  const target = params?.get("target") || "";
  const [pages, setPages] = useState([]);
  const [older, setOlder] = useState({ loading: false, error: null, done: false });
  const first = useAsync(async () => {
    setPages([]);
    setOlder({ loading: false, error: null, done: false });
    return get("/api/v1/audit" + query({ actor, action, outcome, target, limit: AUDIT_PAGE }));
  }, [actor, action, outcome, target]);
  useReady(onReady, first);
  const rows = [...(first.data?.items || []), ...pages.flat()];
  const loadOlder = async () => {
    const last = rows[rows.length - 1];
    if (!last) return;
    setOlder({ loading: true, error: null, done: false });
    try {
      const page = await get("/api/v1/audit" + query({ actor, action, outcome, target, limit: AUDIT_PAGE, before: last.id }));
      setPages((ps) => [...ps, page.items]);
      setOlder({ loading: false, error: null, done: page.items.length < AUDIT_PAGE });
    } catch (e) {
      setOlder({ loading: false, error: e, done: false });
    }
  };
  const done = older.done || (first.data && first.data.items.length < AUDIT_PAGE && !pages.length);
  return (
    <section>
      <div class="forms">
        <label>
          Actor
          <FilterInput id="audit-actor" name="actor" value={actor} placeholder="user name" data-tip="Only what this user did (press Enter or leave the field)" />
        </label>
        <label>
          Action <small>or a prefix ending in “.”</small>
          <FilterInput id="audit-action" name="action" value={action} placeholder="user. / run.clear / login" data-tip="Only this action, or every action of a prefix such as user." />
        </label>
        <label>
          Target
          <FilterInput id="audit-target" name="target" value={target} placeholder="a user, DAG or run" />
        </label>
        <label>
          Outcome
          <select id="audit-outcome" value={outcome} onChange={(e) => setParams({ outcome: e.currentTarget.value })} data-tip="Changes made, or attempts refused">
            <option value="">any</option>
            <option value="ok">ok</option>
            <option value="refused">refused</option>
          </select>
        </label>
        <Button id="audit-refresh" tip="Read the newest entries again" onClick={() => first.reload()}>
          Refresh
        </Button>
      </div>
      <ErrorBox error={first.error} />
      {!first.data && first.loading ? <Loading what="Loading the audit log" /> : null}
      {first.data ? (
        <table class="data" id="audit">
          <thead>
            <tr>
              <th class="num">Id</th>
              <th>At</th>
              <th>Actor</th>
              <th>Action</th>
              <th>Target</th>
              <th>Outcome</th>
              <th>Address</th>
              <th>Detail</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((a) => (
              <tr key={a.id} class="audit-row" data-audit-id={a.id} data-outcome={a.outcome}>
                <td class="num">{a.id}</td>
                <td>{time(a.at)}</td>
                <td class="mono">{a.actor}</td>
                <td class="mono">{a.action}</td>
                <td class="mono">{a.target}</td>
                <td class={a.outcome === "refused" ? "outcome-refused" : ""}>{a.outcome === "refused" ? "✕ refused" : "✓ " + a.outcome}</td>
                <td class="mono">{a.address}</td>
                <td>
                  {a.detail === null || a.detail === undefined || (typeof a.detail === "object" && !Object.keys(a.detail).length) ? (
                    <span class="muted">–</span>
                  ) : (
                    <pre class="audit-detail">{typeof a.detail === "string" ? a.detail : JSON.stringify(a.detail)}</pre>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {first.data && !rows.length ? <p class="empty">No entry matches.</p> : null}
      <ErrorBox error={older.error} />
      {first.data && rows.length ? (
        <div class="row">
          <Button id="audit-older" tip={`The ${AUDIT_PAGE} entries before the last one shown`} disabled={older.loading || done} onClick={loadOlder}>
            {older.loading ? "Loading…" : done ? "No older entries" : "Older"}
          </Button>
          <span class="muted">{rows.length} shown</span>
        </div>
      ) : null}
    </section>
  );
}

function Budgets({ onReady }) {
  const budgets = useAsync(() => get("/api/v1/budgets"), []);
  useReady(onReady, budgets);
  const [kind, setKind] = useState("user");
  const [subject, setSubject] = useState("");
  const [amount, setAmount] = useState("");
  const [error, setError] = useState(null);
  const set = async (e) => {
    e.preventDefault();
    setError(null);
    const n = Number(amount);
    if (!Number.isInteger(n) || n < 0) return setError({ message: "Fuel a day: a whole number, 0 or more" });
    const who = subject.trim();
    const ok = await confirm({
      title: `Set the budget of ${kind} ${who}?`,
      body: (
        <p>
          Runs triggered by {kind === "user" ? <code>{who}</code> : <>
              every <code>{who}</code> (unless a user has a budget of their own)
            </>} may use {fuel(n)} fuel ({n.toLocaleString()}) a day (UTC). Once it is spent, their triggers are refused with 429 until the next day.
        </p>
      ),
      action: "Set budget",
      danger: true,
    });
    if (!ok) return;
    try {
      await put(`/api/v1/budgets/${enc(kind)}/${enc(who)}`, { fuel_per_day: n });
      toast(`Budget of ${kind} ${who}: ${fuel(n)} fuel a day`, "success");
      setSubject("");
      setAmount("");
      budgets.reload();
    } catch (err) {
      setError(err);
    }
  };
  const remove = async (b) => {
    const ok = await confirm({
      title: `Remove the budget of ${b.subject_kind} ${b.subject}?`,
      body: (
        <p>
          {b.subject_kind === "user" ? (
            <>
              <code>{b.subject}</code> falls back to their role's budget, or no limit.
            </>
          ) : (
            <>
              Users of role <code>{b.subject}</code> without a budget of their own have no limit any more.
            </>
          )}
        </p>
      ),
      action: "Remove budget",
      danger: true,
    });
    if (ok && (await attempt(() => del(`/api/v1/budgets/${enc(b.subject_kind)}/${enc(b.subject)}`), `Removed the budget of ${b.subject}`))) budgets.reload();
  };
  return (
    <section>
      <form class="forms" onSubmit={set} id="budget-set">
        <label>
          Of a
          <select id="budget-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)} data-tip="A user's own budget wins over their role's">
            <option value="user">user</option>
            <option value="role">role</option>
          </select>
        </label>
        <label>
          {kind === "user" ? "User" : "Role"}
          {kind === "role" ? (
            <select id="budget-subject" value={subject} onChange={(e) => setSubject(e.currentTarget.value)}>
              <option value="">choose…</option>
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          ) : (
            <input id="budget-subject" value={subject} onInput={(e) => setSubject(e.currentTarget.value)} placeholder="user name" />
          )}
        </label>
        <label>
          Fuel a day
          <input id="budget-fuel" type="number" min="0" value={amount} onInput={(e) => setAmount(e.currentTarget.value)} placeholder="1000000000" />
        </label>
        <Button type="submit" primary id="budget-submit" tip="Set this daily fuel budget (asks first)" disabled={!subject.trim() || amount === ""}>
          Set budget
        </Button>
      </form>
      <ErrorBox error={error} />
      <ErrorBox error={budgets.error} />
      {!budgets.data && budgets.loading ? <Loading what="Loading the budgets" /> : null}
      {budgets.data ? (
        <table class="data" id="budgets">
          <thead>
            <tr>
              <th>Of</th>
              <th>Name</th>
              <th class="num">Fuel a day</th>
              <th>Updated</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {budgets.data.items.map((b) => (
              <tr key={b.subject_kind + b.subject} class="budget-row" data-subject={b.subject} data-kind={b.subject_kind}>
                <td>{b.subject_kind}</td>
                <td class="mono">{b.subject}</td>
                <td class="num" data-tip={`${b.fuel_per_day.toLocaleString()} units`}>
                  {fuel(b.fuel_per_day)}
                </td>
                <td>{time(b.updated_at)}</td>
                <td class="row">
                  <Button
                    class="budget-edit btn-small"
                    tip={`Put this budget in the form above to change it`}
                    onClick={() => {
                      setKind(b.subject_kind);
                      setSubject(b.subject);
                      setAmount(String(b.fuel_per_day));
                    }}
                  >
                    Edit
                  </Button>
                  <Button class="budget-remove btn-small" danger tip={`Remove the budget of ${b.subject} (asks first)`} onClick={() => remove(b)}>
                    Remove
                  </Button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {budgets.data && !budgets.data.items.length ? <p class="empty">No budget: nobody's fuel is limited.</p> : null}
    </section>
  );
}

const TABS = [
  ["users", "Users", "Who may log in, and their roles"],
  ["tokens", "Tokens", "API tokens: create (the secret is shown once) and revoke"],
  ["pools", "Pools", "Pools of slots that tasks share"],
  ["audit", "Audit log", "Every change and every refused attempt"],
  ["budgets", "Budgets", "Daily fuel budgets of users and roles"],
];

export function Admin({ tab, params }) {
  const me = useSession();
  const [readyTab, setReadyTab] = useState(null);
  if (!atLeast("admin", me))
    return (
      <main class="page" id="admin-page" data-ready="true">
        <h1>Admin</h1>
        <p>Only admins manage users, tokens, pools, budgets and read the audit log. You are {me?.role}.</p>
      </main>
    );
  const current = TABS.some(([k]) => k === tab) ? tab : "users";
  const onReady = () => setReadyTab(current);
  return (
    <main class="page" id="admin-page" data-ready={readyTab === current ? "true" : "false"} data-tab={current}>
      <h1>Admin</h1>
      <Tabs tabs={TABS} current={current} hrefOf={(k) => `/admin/${k}`} Link={Link} />
      {current === "users" ? <Users onReady={onReady} /> : null}
      {current === "tokens" ? <Tokens params={params} onReady={onReady} /> : null}
      {current === "pools" ? <Pools onReady={onReady} /> : null}
      {current === "audit" ? <Audit params={params} onReady={onReady} /> : null}
      {current === "budgets" ? <Budgets onReady={onReady} /> : null}
    </main>
  );
}
