// Placeholder until this view lands (issue 11).
export function RunPage() {
  return <main class="page"><h1>RunPage</h1><p>Coming in this issue.</p></main>;
}
