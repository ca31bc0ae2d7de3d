// Placeholder until this view lands (issue 11).
export function ComparePage() {
  return <main class="page"><h1>ComparePage</h1><p>Coming in this issue.</p></main>;
}
