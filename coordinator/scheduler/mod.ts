/** Module selection policies (issue 5) and the registry the job options name them by. */
import { all } from "./all.ts";
import { kr } from "./kr.ts";
import { oneshot } from "./oneshot.ts";
import type { SelectionPolicy } from "./policy.ts";
import { random } from "./random.ts";

export * from "./policy.ts";
export { all, kr, oneshot, random };

export const POLICIES: Readonly<Record<string, SelectionPolicy>> = { kr, random, oneshot, all };
export type PolicyName = "kr" | "random" | "oneshot" | "all";

/** The policy a job option names; unknown names are an error listing the known ones. */
export function policyByName(name: string): SelectionPolicy {
  const p = Object.hasOwn(POLICIES, name) ? POLICIES[name] : undefined;
  if (!p) {
    throw new Error(
      `unknown module-selection policy "${name}"; choose from ${Object.keys(POLICIES).join(", ")}`,
    );
  }
  return p;
}
