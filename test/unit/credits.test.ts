import { describe, expect, it } from 'vitest';
import { attemptCredits } from '../../lib/decide/credits.js';

const task = (estimatedCredits: number) => ({ model: 'gen4_turbo', duration: 5, estimated_credits: estimatedCredits });

describe('the price of an attempt with several generations', () => {
  it('counts a replaced generation at the figure the next one kept of it', () => {
    const { total, generations } = attemptCredits(
      [{ task: task(50) }, { task: task(50), submitting: { replaces: { credits: 10 } } }],
      40,
      false,
    );
    expect(generations).toEqual([
      { credits: 10, source: 'runway' },
      { credits: 40, source: 'runway' },
    ]);
    expect(total).toEqual({ credits: 50, source: 'runway' });
  });

  it('falls back to the estimate when the next generation’s claim is missing', () => {
    const { total } = attemptCredits([{ task: task(50) }, { task: task(30) }], undefined, false);
    expect(total).toEqual({ credits: 80, source: 'runway' });
  });
});
