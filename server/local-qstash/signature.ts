import { createHash, randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';

/** contract.md §3: a delivery signature is valid for five minutes. */
const SIGNATURE_LIFETIME_SECONDS = 300;

export interface SignDeliveryInput {
  /** The literal `sig_...` string; QStash uses its UTF-8 bytes as the HMAC key. */
  readonly signingKey: string;
  /** Destination URL exactly as published; the Receiver compares it with `sub`. */
  readonly url: string;
  /** The bytes the delivery carries. */
  readonly body: Uint8Array;
  readonly nowSeconds: number;
}

/** The `Upstash-Signature` JWT for one delivery attempt. */
export async function signDelivery(input: SignDeliveryInput): Promise<string> {
  const { nowSeconds } = input;
  return new SignJWT({ body: hashBody(input.body) })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('Upstash')
    .setSubject(input.url)
    .setIssuedAt(nowSeconds)
    .setNotBefore(nowSeconds)
    .setExpirationTime(nowSeconds + SIGNATURE_LIFETIME_SECONDS)
    .setJti(`jwt_${randomBytes(12).toString('hex')}`)
    .sign(new TextEncoder().encode(input.signingKey));
}

/**
 * base64url(sha256(body)) with `=` padding kept, the form Go's URL encoding produces.
 * The Receiver strips trailing `=` on both sides before comparing, so either form passes
 * there; keeping the padding catches hand-written verifiers that would not.
 */
export function hashBody(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('base64').replace(/\+/g, '-').replace(/\//g, '_');
}
