// Placeholder until this view lands (issue 11).
export function Admin() {
  return <main class="page"><h1>Admin</h1><p>Coming in this issue.</p></main>;
}
