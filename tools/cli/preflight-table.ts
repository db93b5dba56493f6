import { RUNWAY_MODELS } from '../../lib/config.js';
import type { PreflightCheck, PreflightReport } from '../../lib/steps/preflight.js';
import { formatTable, type TableRow } from './table.js';

/** How `npm run check` prints a preflight report, whether it ran here or on a deployment. */

const count = (n: number): string => n.toLocaleString('en-US');

function resultOf(check: PreflightCheck): string {
  if (check.skipped) return 'skipped';
  return check.ok ? 'ok' : 'FAIL';
}

function row(name: string, check: PreflightCheck, place?: string): TableRow {
  const detail = place ? `${check.detail} — ${place}` : check.detail;
  return { cells: [name, resultOf(check), detail], note: !check.ok && check.fix ? `fix: ${check.fix}` : undefined };
}

function runwayRows(runway: PreflightReport['runway']): TableRow[] {
  const balance = runway.credit_balance === undefined ? '' : `; credit balance ${count(runway.credit_balance)}`;
  const head = row('Runway', { ...runway, detail: `${runway.detail}${balance}` }, runway.url);
  const models = runway.models ?? {};
  const perModel = RUNWAY_MODELS.flatMap((model): TableRow[] => {
    const limits = models[model];
    if (!limits) return [];
    const used = runway.usage?.[model] ?? 0;
    const full = used >= limits.maxDailyGenerations ? ' (daily limit reached)' : '';
    const detail = `${count(limits.maxConcurrentGenerations)} at once, ${count(limits.maxDailyGenerations)} a day; ${count(used)} today${full}`;
    return [{ cells: [`  ${model}`, '', detail] }];
  });
  return [head, ...perModel];
}

export function preflightRows(report: PreflightReport): TableRow[] {
  const rows = [
    row('configuration', report.config),
    row('app worker API', report.next_api, report.next_api.url),
    ...runwayRows(report.runway),
    row('QStash', report.qstash, report.qstash.url),
    row('ledger', report.ledger, report.ledger.store),
  ];
  if (report.callback) rows.push(row('callback URL', report.callback));
  else if (report.callback_base_url) rows.push({ cells: ['callback URL', '', report.callback_base_url] });
  return rows;
}

/** The checks, then the settings in effect (when known), then one summary line. */
export function formatPreflight(report: PreflightReport): string {
  const checks = [report.config, report.next_api, report.runway, report.qstash, report.ledger, report.callback].filter(
    (check): check is PreflightCheck => check !== undefined,
  );
  const failed = checks.filter((check) => !check.ok && !check.skipped).length;
  const skipped = checks.filter((check) => check.skipped).length;
  const parts = [formatTable(['check', 'result', 'detail'], preflightRows(report))];
  const settings = report.config.settings;
  if (settings) {
    parts.push(formatTable(['setting', 'value (defaults applied)'], settings.map((setting) => ({ cells: [setting.name, setting.value] }))));
  }
  const notChecked = skipped > 0 ? `, ${skipped} not checked` : '';
  parts.push(report.ok ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks failed${notChecked}`);
  return `${parts.join('\n\n')}\n`;
}
