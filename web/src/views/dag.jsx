// Placeholder until this view lands (issue 11).
export function DagPage() {
  return <main class="page"><h1>DagPage</h1><p>Coming in this issue.</p></main>;
}
