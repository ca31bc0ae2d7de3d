// Placeholder until this view lands (issue 11).
export function DagList() {
  return <main class="page"><h1>DagList</h1><p>Coming in this issue.</p></main>;
}
