// Placeholder until this view lands (issue 11).
export function Plugins() {
  return <main class="page"><h1>Plugins</h1><p>Coming in this issue.</p></main>;
}
