import type { ChaosFigures, ItemNote } from './figures.js';

/**
 * The invariants of design §4 and of a worker that leases only what Runway can start, as a
 * chaos run can observe them; one sentence per broken one.
 */

function listed(notes: readonly ItemNote[]): string {
  const shown = notes
    .slice(0, 5)
    .map((note) => `${note.item_id} (${note.detail})`)
    .join('; ');
  return shown + (notes.length > 5 ? `; and ${notes.length - 5} more` : '');
}

export function checkInvariants(figures: ChaosFigures): string[] {
  const { details } = figures;
  const broken: string[] = [];

  if (figures.runway_creates_per_generation_max > 1) {
    broken.push(
      `more than one Runway task for one generation of a lease attempt (max ${figures.runway_creates_per_generation_max}): ${listed(details.extraRunwayTasks)}`,
    );
  }
  const generationsAllowed = 1 + details.regenerationsAllowed;
  if (figures.runway_tasks_per_attempt_max > generationsAllowed) {
    broken.push(
      `more Runway tasks in a lease attempt than the ${generationsAllowed} generation(s) allowed (max ${figures.runway_tasks_per_attempt_max}): ${listed(details.tooManyGenerations)}`,
    );
  }
  if (figures.runway_tasks_unmapped > 0) {
    broken.push(`${figures.runway_tasks_unmapped} Runway task(s) whose prompt names no seeded item: ${details.unmappedTasks.slice(0, 5).join(', ')}`);
  }
  if (details.concurrencyLimit !== undefined && figures.throttled_at_once_max > details.concurrencyLimit) {
    broken.push(
      `${figures.throttled_at_once_max} Runway tasks waited THROTTLED at once, more than the limit of ${details.concurrencyLimit}: backpressure did not hold`,
    );
  }
  if (figures.uploads_per_item_max > 1) broken.push(`more than one video stored for an item: ${listed(details.extraUploads)}`);
  if (figures.videos_not_identical > 0) {
    broken.push(`${figures.videos_not_identical} stored video(s) not byte-identical to their Runway output: ${listed(details.videosNotIdentical)}`);
  }
  if (figures.html_outputs_stored > 0) {
    broken.push(`${figures.html_outputs_stored} HTML page(s) stored as a video: ${listed(details.htmlStored)}`);
  }
  if (figures.duplicate_reports > 0) {
    broken.push(`${figures.duplicate_reports} item(s) with more than one applied report: ${listed(details.duplicateReports)}`);
  }
  if (figures.failed_after_upload > 0) {
    broken.push(`${figures.failed_after_upload} item(s) failed after their video was uploaded: ${listed(details.failedAfterUpload)}`);
  }
  if (figures.failed_unexpected > 0) {
    broken.push(`${figures.failed_unexpected} item(s) failed for a reason no injected fault explains: ${listed(details.unexpectedFailures)}`);
  }
  if (figures.lost > 0) broken.push(`${figures.lost} item(s) neither completed nor failed at the end: ${listed(details.lostItems)}`);
  if (figures.stalled_items > 0) {
    broken.push(
      `${figures.stalled_items} item(s) held longer than ${figures.stall_threshold_seconds} s without progress: ${listed(details.stalledItems)}`,
    );
  }
  if (figures.leaked_secrets > 0) {
    const sample = details.leaks
      .slice(0, 5)
      .map((leak) => `${leak.kind} in ${leak.where}: ${leak.excerpt}`)
      .join('; ');
    broken.push(`${figures.leaked_secrets} secret(s) in logs or error messages: ${sample}`);
  }
  const accounted = figures.completed + figures.failed_expected + figures.failed_unexpected + figures.lost;
  if (accounted !== figures.items) broken.push(`items do not add up: ${accounted} accounted for, ${figures.items} seeded`);
  return broken;
}
