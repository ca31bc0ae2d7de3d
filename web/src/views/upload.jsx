// Placeholder until this view lands (issue 11).
export function Upload() {
  return <main class="page"><h1>Upload</h1><p>Coming in this issue.</p></main>;
}
