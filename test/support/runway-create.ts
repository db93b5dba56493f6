import { z } from 'zod';

/** The body of `POST /v1/image_to_video` as the sandbox Runway recorded it. */
export const createBodySchema = z.object({
  model: z.string(),
  promptImage: z.string(),
  ratio: z.string(),
  duration: z.number(),
  promptText: z.string().optional(),
  audio: z.boolean().optional(),
});
export type CreateBody = z.infer<typeof createBodySchema>;
