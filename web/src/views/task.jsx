// Placeholder until the task instance panel lands (issue 11).
export function TaskPanel({ runId, taskId, onClose }) {
  return (
    <aside class="side-panel" id="task-panel">
      <header>
        <h2>{taskId}</h2>
        <button type="button" class="btn" onClick={onClose}>Close</button>
      </header>
      <div class="body">Run {runId}</div>
    </aside>
  );
}
