// Log in with a token (from `sandflow users token`, or the one a first start prints) or with a
// user name and password (POST /api/v1/auth/login gives a token for 24 h).
import { useState } from "preact/hooks";
import { get, post, setToken } from "../api.js";
import { Button, ErrorBox } from "../components.jsx";

export function Login({ onLoggedIn }) {
  const [mode, setMode] = useState("password");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [tokenText, setTokenText] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      let t = tokenText.trim();
      if (mode === "password") {
        const answer = await post("/api/v1/auth/login", { username, password });
        t = answer.access_token;
      }
      setToken(t);
      const me = await get("/api/v1/me");
      onLoggedIn(me);
    } catch (err) {
      setToken(null);
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <form class="login-box" onSubmit={submit} id="login-form">
        <h1>
          <span class="logo" aria-hidden="true">◇</span> Sandflow
        </h1>
        <div class="segmented" role="radiogroup" aria-label="How to log in">
          <button type="button" role="radio" aria-checked={mode === "password"} class={mode === "password" ? "on" : ""} onClick={() => setMode("password")} id="login-mode-password" data-tip="Log in with your user name and password">
            User and password
          </button>
          <button type="button" role="radio" aria-checked={mode === "token"} class={mode === "token" ? "on" : ""} onClick={() => setMode("token")} id="login-mode-token" data-tip="Log in with an API token (sf_…)">
            Token
          </button>
        </div>
        {mode === "password" ? (
          <>
            <label>
              User
              <input id="login-username" autocomplete="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} required autofocus />
            </label>
            <label>
              Password
              <input id="login-password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required />
            </label>
          </>
        ) : (
          <label>
            Token
            <input id="login-token" type="password" autocomplete="off" placeholder="sf_…" value={tokenText} onInput={(e) => setTokenText(e.currentTarget.value)} required autofocus />
            <small>From <code>sandflow users token NAME</code>, or the one the first start printed (<code>$SANDFLOW_HOME/token</code>).</small>
          </label>
        )}
        <ErrorBox error={error} />
        <Button primary type="submit" id="login-submit" disabled={busy} tip="Log in">
          {busy ? "Logging in…" : "Log in"}
        </Button>
      </form>
    </main>
  );
}
