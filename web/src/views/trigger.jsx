// Placeholder until the trigger dialog lands (issue 11).
export function TriggerDialog({ onClose }) {
  onClose?.();
  return null;
}
