import { describe, expect, it } from 'vitest';
import { attemptView, itemViewOf, itemViewSchema, type AttemptFacts, type LiveTask } from '../../lib/decide/item-view.js';
import type { Fact, JobRecord } from '../../lib/ledger/ledger.js';

/**
 * The item lookup's answer, built straight from hand-made ledger records: what an operator
 * reads for each attempt (`?item=` and `npm run item`).
 */

const ITEM_ID = 'item-1';
const AT = '2026-01-01T00:00:00.000Z';
const NO_LIVE: ReadonlyMap<string, LiveTask> = new Map();

function taskFact(runwayTaskId: string, estimatedCredits?: number): Fact<'task'> {
  return {
    runway_task_id: runwayTaskId,
    model: 'gen4_turbo',
    submitted_at: AT,
    duration: 5,
    ratio: '1280:720',
    ...(estimatedCredits === undefined ? {} : { estimated_credits: estimatedCredits }),
  };
}

function record(facts: Omit<JobRecord, 'itemId' | 'attempt'>): JobRecord {
  return { itemId: ITEM_ID, attempt: 1, ...facts };
}

function reported(extra: Partial<Fact<'reported'>> = {}): Fact<'reported'> {
  return { status: 'completed', at: AT, video_storage_path: 'videos/item-1.mp4', ...extra };
}

describe('the price of a reported attempt', () => {
  it('takes the figure the report logged as Runway’s when the report did not say where it came from', () => {
    const facts: AttemptFacts = { generations: [record({ task: taskFact('t1', 50), reported: reported({ credits: 25 }) })] };
    const view = attemptView(1, facts, NO_LIVE, false);
    expect(view.credits).toBe(25);
    expect(view.credits_source).toBe('runway');
    expect(view.usd).toBe(0.25);
  });

  it('keeps the report’s own word that its figure is the model table’s estimate', () => {
    const facts: AttemptFacts = {
      generations: [record({ task: taskFact('t1'), reported: reported({ credits: 25, credits_source: 'estimate' }) })],
    };
    expect(attemptView(1, facts, NO_LIVE, false).credits_source).toBe('estimate');
  });
});

describe('what became of the report', () => {
  const withRounds = (rounds: AttemptFacts['rounds']): string | undefined =>
    attemptView(1, { generations: [record({ task: taskFact('t1'), reported: reported() })], rounds }, NO_LIVE, false).report
      ?.outcome;

  it('says sent when no send round was recorded', () => {
    expect(withRounds(undefined)).toBe('sent');
  });

  it('says sent, not sent again, when the only round recorded is the first', () => {
    expect(withRounds({ round: 1, unconfirmed: false })).toBe('sent');
  });

  it('names the round when the report was sent again', () => {
    expect(withRounds({ round: 3, unconfirmed: false })).toBe('sent again (round 3)');
  });
});

describe('what Runway said the last generation cost', () => {
  it('takes Runway’s live cost when the ledger has no cost fact', () => {
    const facts: AttemptFacts = { generations: [record({ submitting: { at: AT }, task: taskFact('t1', 50) })] };
    const live = new Map<string, LiveTask>([['t1', { kind: 'task', status: 'SUCCEEDED', cost: 40 }]]);
    const view = attemptView(1, facts, live, false);
    expect(view.generations[0]?.final_credits).toBe(40);
    expect(view.credits).toBe(40);
  });

  it('ignores a cost fact that names an earlier generation than the last', () => {
    const facts: AttemptFacts = {
      generations: [
        record({ submitting: { at: AT }, task: taskFact('t1', 50), cost: { runway_task_id: 't1', generation: 1, credits: 99, at: AT } }),
        record({ generation: 2, submitting: { at: AT, replaces: { runway_task_id: 't1', credits: 10 } }, task: taskFact('t2', 50) }),
      ],
    };
    const live = new Map<string, LiveTask>([['t2', { kind: 'task', status: 'SUCCEEDED', cost: 40 }]]);
    const view = attemptView(1, facts, live, false);
    expect(view.generations.map((generation) => generation.final_credits)).toEqual([10, 40]);
    expect(view.credits).toBe(50);
  });
});

describe('replaced generations', () => {
  it('marks only the generation a later one replaced, with its failure code', () => {
    const facts: AttemptFacts = {
      generations: [
        record({ submitting: { at: AT }, task: taskFact('t1', 50) }),
        record({
          generation: 2,
          submitting: { at: AT, replaces: { runway_task_id: 't1', failure_code: 'INTERNAL', credits: 0 } },
          task: taskFact('t2', 50),
        }),
      ],
    };
    const [first, second] = attemptView(1, facts, NO_LIVE, false).generations;
    expect(first?.replaced).toStrictEqual({ failure_code: 'INTERNAL' });
    expect(second).not.toHaveProperty('replaced');
  });

  it('still shows a later generation whose claim the ledger could not read', () => {
    const facts: AttemptFacts = {
      generations: [record({ submitting: { at: AT }, task: taskFact('t1', 50) }), record({ generation: 2, task: taskFact('t2', 30) })],
    };
    const view = attemptView(1, facts, NO_LIVE, false);
    expect(view.state).toBe('at-runway');
    expect(view.generations.map((generation) => generation.runway_task_id)).toEqual(['t1', 't2']);
    expect(view.generations[0]).not.toHaveProperty('replaced');
    expect(view.credits).toBe(80);
  });
});

describe('an abandoned attempt', () => {
  it('shows why and when it was given back, and nothing of the transient-failure counters', () => {
    const facts: AttemptFacts = {
      generations: [
        record({
          submitting: { at: AT },
          task: taskFact('t1', 50),
          abandoned: { reason: 'lease lost', at: AT, transient_failures: 2, photo_not_found: 1 },
        }),
      ],
    };
    const view = attemptView(1, facts, NO_LIVE, false);
    expect(view.state).toBe('abandoned');
    expect(view.abandoned).toStrictEqual({ reason: 'lease lost', at: AT });
  });
});

describe('the answer as `npm run item` reads it back', () => {
  it('comes through the lookup schema whole: report, abandonment, replaced generation and Runway’s live word', () => {
    const attempts: AttemptFacts[] = [
      { generations: [record({ task: taskFact('t1', 50), reported: reported({ credits: 50, credits_source: 'runway' }) })] },
      {
        generations: [
          { itemId: ITEM_ID, attempt: 2, submitting: { at: AT }, task: taskFact('t2', 50) },
          {
            itemId: ITEM_ID,
            attempt: 2,
            generation: 2,
            submitting: { at: AT, replaces: { runway_task_id: 't2', failure_code: 'INTERNAL' } },
            task: taskFact('t3', 50),
          },
        ],
      },
      { generations: [{ itemId: ITEM_ID, attempt: 3, abandoned: { reason: 'lease lost', at: AT } }] },
    ];
    const live = new Map<string, LiveTask>([['t3', { kind: 'task', status: 'RUNNING', progress: 0.5, failureCode: 'X', cost: 7 }]]);
    const view = itemViewOf(ITEM_ID, attempts, live, false);
    expect(view.attempts[1]?.generations[0]?.replaced).toStrictEqual({ failure_code: 'INTERNAL' });
    expect(view.attempts[1]?.generations[1]?.runway).toStrictEqual({ status: 'RUNNING', progress: 0.5, failure_code: 'X', cost_credits: 7 });
    expect(itemViewSchema.parse(JSON.parse(JSON.stringify(view)))).toStrictEqual(view);
  });
});
