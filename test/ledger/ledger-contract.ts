import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { factPath, type JobKey, type Ledger } from '../../lib/ledger/ledger.js';

export interface LedgerHarness {
  readonly ledger: Ledger;
  close(): Promise<void>;
  /** Writes raw text where a fact lives (`items/<seg>/<attempt>/<fact>.json`), bypassing the ledger. */
  writeRaw(pathname: string, text: string): Promise<void>;
}

const AT = '2025-01-01T00:00:00.000Z';
const task = (id: string) => ({ runway_task_id: id, model: 'gen4_turbo', submitted_at: AT, duration: 5, ratio: '1280:720' });

/** The behaviour every Ledger must show (design §4), whatever stores the facts. */
export function ledgerContract(name: string, makeLedger: () => Promise<LedgerHarness>): void {
  describe(`${name} ledger`, () => {
    let harness: LedgerHarness;
    let ledger: Ledger;

    beforeEach(async () => {
      harness = await makeLedger();
      ledger = harness.ledger;
    });
    afterEach(async () => {
      await harness.close();
    });

    describe('an item it has never seen', () => {
      it('has no latest attempt', async () => {
        expect(await ledger.latest('item-never-seen')).toBeUndefined();
      });

      it('reads an attempt as a record without facts', async () => {
        expect(await ledger.read({ itemId: 'item-never-seen', attempt: 1 })).toEqual({
          itemId: 'item-never-seen',
          attempt: 1,
        });
      });
    });

    describe('a claimed fact', () => {
      const key: JobKey = { itemId: 'item-a', attempt: 1 };

      it('is written by the first claim and read back', async () => {
        expect(await ledger.claim(key, 'task', task('task-1'))).toBe(true);
        expect(await ledger.read(key)).toEqual({ itemId: 'item-a', attempt: 1, task: task('task-1') });
        expect(await ledger.latest('item-a')).toEqual({ itemId: 'item-a', attempt: 1, task: task('task-1') });
      });

      it('refuses a second claim and keeps the first value', async () => {
        expect(await ledger.claim(key, 'task', task('task-1'))).toBe(true);
        expect(await ledger.claim(key, 'task', task('task-2'))).toBe(false);
        expect((await ledger.read(key)).task).toEqual(task('task-1'));
      });

      it('leaves the other facts of the attempt absent', async () => {
        await ledger.claim(key, 'submitting', { at: AT });
        const record = await ledger.read(key);
        expect(record.submitting).toEqual({ at: AT });
        expect(record.task).toBeUndefined();
        expect(record.uploaded).toBeUndefined();
        expect(record.reported).toBeUndefined();
        expect(record.abandoned).toBeUndefined();
      });

      it('keeps every fact of an attempt side by side', async () => {
        await ledger.claim(key, 'submitting', { at: AT });
        await ledger.claim(key, 'task', task('task-1'));
        await ledger.claim(key, 'uploaded', { storage_path: 'videos/a.mp4', bytes: 1234, at: AT });
        await ledger.claim(key, 'reported', { status: 'completed', at: AT });
        expect(await ledger.read(key)).toEqual({
          itemId: 'item-a',
          attempt: 1,
          submitting: { at: AT },
          task: task('task-1'),
          uploaded: { storage_path: 'videos/a.mp4', bytes: 1234, at: AT },
          reported: { status: 'completed', at: AT },
        });
      });

      it('refuses a value that does not match the fact schema, writing nothing', async () => {
        const invalid = { status: 'maybe', at: AT } as unknown as { status: 'failed'; at: string };
        await expect(ledger.claim(key, 'reported', invalid)).rejects.toThrow();
        expect(await ledger.latest('item-a')).toBeUndefined();
      });
    });

    describe('twenty deliveries racing for one fact', () => {
      it('lets exactly one of them win, and its value is the one stored', async () => {
        const key: JobKey = { itemId: 'item-race', attempt: 1 };
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => ledger.claim(key, 'task', task(`task-${i}`))),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect((await ledger.read(key)).task).toEqual(task(`task-${winner}`));
      });
    });

    describe('an item with several attempts', () => {
      it('reports the attempt started after an earlier one was reported', async () => {
        await ledger.claim({ itemId: 'item-retry', attempt: 1 }, 'reported', { status: 'failed', at: AT });
        await ledger.claim({ itemId: 'item-retry', attempt: 2 }, 'submitting', { at: AT });
        expect(await ledger.latest('item-retry')).toEqual({
          itemId: 'item-retry',
          attempt: 2,
          submitting: { at: AT },
        });
      });

      it('orders attempts as numbers, so 10 comes after 9', async () => {
        for (const attempt of [1, 2, 9, 10]) {
          await ledger.claim({ itemId: 'item-many', attempt }, 'submitting', { at: `${AT}#${attempt}` });
        }
        const latest = await ledger.latest('item-many');
        expect(latest?.attempt).toBe(10);
        expect(latest?.submitting).toEqual({ at: `${AT}#10` });
      });

      it('still reads an earlier attempt on request', async () => {
        await ledger.claim({ itemId: 'item-retry', attempt: 1 }, 'task', task('first'));
        await ledger.claim({ itemId: 'item-retry', attempt: 2 }, 'task', task('second'));
        expect((await ledger.read({ itemId: 'item-retry', attempt: 1 })).task).toEqual(task('first'));
      });
    });

    describe('item ids that are not plain words', () => {
      const awkward = ['a/b', '../escape', '..', '.', 'a.b', 'x\\y', 'ünïcødé ✓', 'a%2Fb', 'items/a/1', ' spaced '];

      it('keeps each id apart from every other, with no path escaping the ledger', async () => {
        for (const [i, itemId] of awkward.entries()) {
          expect(await ledger.claim({ itemId, attempt: 1 }, 'task', task(`t${i}`))).toBe(true);
        }
        for (const [i, itemId] of awkward.entries()) {
          expect(await ledger.latest(itemId)).toEqual({ itemId, attempt: 1, task: task(`t${i}`) });
        }
        // A prefix of another id ("a" of "a/b", "a.b") has nothing of its own.
        expect(await ledger.latest('a')).toBeUndefined();
      });

      it('refuses an empty item id and a non-positive attempt', async () => {
        await expect(ledger.claim({ itemId: '', attempt: 1 }, 'submitting', { at: AT })).rejects.toThrow();
        await expect(ledger.claim({ itemId: 'x', attempt: 0 }, 'submitting', { at: AT })).rejects.toThrow();
        await expect(ledger.claim({ itemId: 'x', attempt: 1.5 }, 'submitting', { at: AT })).rejects.toThrow();
      });
    });

    describe('a stored fact that is corrupt', () => {
      const key: JobKey = { itemId: 'item-corrupt', attempt: 1 };

      it('reads as absent when the JSON is cut short', async () => {
        await harness.writeRaw(factPath(key, 'task'), '{"runway_task_id":"t');
        expect((await ledger.read(key)).task).toBeUndefined();
        expect(await ledger.latest(key.itemId)).toEqual({ itemId: key.itemId, attempt: 1 });
      });

      it('reads as absent when the JSON does not match the schema', async () => {
        await harness.writeRaw(factPath(key, 'uploaded'), JSON.stringify({ storage_path: 7, bytes: -1 }));
        expect((await ledger.read(key)).uploaded).toBeUndefined();
      });

      it('is never overwritten by a claim', async () => {
        await harness.writeRaw(factPath(key, 'task'), 'not json');
        expect(await ledger.claim(key, 'task', task('task-1'))).toBe(false);
        expect((await ledger.read(key)).task).toBeUndefined();
      });
    });

    describe('a later generation of an attempt', () => {
      const attempt: JobKey = { itemId: 'item-gen', attempt: 1 };
      const second: JobKey = { ...attempt, generation: 2 };

      it('keeps its facts apart from the attempt\'s own, and reads back as that generation', async () => {
        await ledger.claim(attempt, 'task', task('first'));
        const replaces = { runway_task_id: 'first', failure_code: 'INTERNAL', credits: 25 };
        expect(await ledger.claim(second, 'submitting', { at: AT, replaces })).toBe(true);
        expect(await ledger.claim(second, 'task', task('second'))).toBe(true);
        expect(await ledger.read(second)).toEqual({ ...second, submitting: { at: AT, replaces }, task: task('second') });
        expect((await ledger.read(attempt)).task).toEqual(task('first'));
      });

      it('is claimed once, like any fact', async () => {
        expect(await ledger.claim(second, 'submitting', { at: AT })).toBe(true);
        expect(await ledger.claim(second, 'submitting', { at: `${AT}#2` })).toBe(false);
      });

      it('is named by latest(), which still answers with the attempt\'s own facts', async () => {
        await ledger.claim(attempt, 'task', task('first'));
        expect(await ledger.latest(attempt.itemId)).toEqual({ ...attempt, task: task('first') });
        await ledger.claim({ ...attempt, generation: 3 }, 'submitting', { at: AT });
        await ledger.claim(second, 'submitting', { at: AT });
        expect(await ledger.latest(attempt.itemId)).toEqual({ ...attempt, latestGeneration: 3, task: task('first') });
      });

      it('refuses a non-positive generation', async () => {
        await expect(ledger.claim({ ...attempt, generation: 0 }, 'submitting', { at: AT })).rejects.toThrow();
      });
    });

    describe('Runway slot markers', () => {
      const a: JobKey = { itemId: 'item-a', attempt: 1 };
      const b: JobKey = { itemId: 'item-b', attempt: 2 };

      it('count each job in flight once per model, however often it is marked', async () => {
        const before = Date.now() - 1_000;
        await ledger.markSlot(a, 'gen4_turbo');
        await ledger.markSlot(a, 'gen4_turbo');
        await ledger.markSlot(b, 'gen4.5');
        const view = await ledger.slots(before);
        expect(view.inFlight.map((marker) => marker.model).sort()).toEqual(['gen4.5', 'gen4_turbo']);
        for (const marker of view.inFlight) {
          expect(marker.atMs).toBeGreaterThanOrEqual(before);
          expect(marker.atMs).toBeLessThanOrEqual(Date.now() + 1_000);
        }
        expect(view.throttledAtMs).toEqual({});
      });

      it('are gone once released, and releasing twice is fine', async () => {
        await ledger.markSlot(a, 'gen4_turbo');
        await ledger.releaseSlot(a, 'gen4_turbo');
        await ledger.releaseSlot(a, 'gen4_turbo');
        expect((await ledger.slots(0)).inFlight).toEqual([]);
      });

      it('older than asked for are dropped, and deleted for good', async () => {
        await ledger.markSlot(a, 'gen4_turbo');
        expect((await ledger.slots(Date.now() + 60_000)).inFlight).toEqual([]);
        expect((await ledger.slots(0)).inFlight).toEqual([]);
      });

      it('keep when a model was last seen THROTTLED, until cleared', async () => {
        const before = Date.now() - 1_000;
        await ledger.markThrottled('veo3.1');
        await ledger.markThrottled('veo3.1');
        const view = await ledger.slots(0);
        expect(Object.keys(view.throttledAtMs)).toEqual(['veo3.1']);
        expect(view.throttledAtMs['veo3.1']).toBeGreaterThanOrEqual(before);
        expect(view.inFlight).toEqual([]);
        await ledger.clearThrottled('veo3.1');
        await ledger.clearThrottled('veo3.1');
        expect((await ledger.slots(0)).throttledAtMs).toEqual({});
      });

      it('never show up as an item\'s facts', async () => {
        await ledger.markSlot(a, 'gen4_turbo');
        expect(await ledger.latest(a.itemId)).toBeUndefined();
      });
    });

    describe('the reachability check', () => {
      it('passes against a working store and leaves no facts behind', async () => {
        await expect(ledger.check()).resolves.toBeUndefined();
        await expect(ledger.check()).resolves.toBeUndefined();
        expect(await ledger.latest('check')).toBeUndefined();
      });
    });
  });
}
