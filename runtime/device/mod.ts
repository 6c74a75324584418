/**
 * The edge device of DLoRA (DLORA.md §2): private data, LoRA adapters and their optimizer on the
 * device; the frozen blocks on the coordinator, reached over the step stream.
 */
export { benchmarkGemm, type Capability, hostMemoryMb, measureCapability } from "./capability.ts";
export {
  CoordinatorClient,
  CoordinatorError,
  type DeviceJob,
  type Registration,
} from "./client.ts";
export {
  type DeviceOptions,
  type DeviceResult,
  deviceResultJson,
  type DeviceStepInfo,
  runDevice,
} from "./device.ts";
export {
  ADAMW_FLOPS_PER_PARAM,
  type DeviceFlops,
  headBackwardFlops,
  headForwardFlops,
  lossFlops,
  optimizerFlops,
  totalFlops,
} from "./flops.ts";
export {
  DeviceProtocolError,
  DeviceSession,
  type DeviceSessionOptions,
  type DeviceStepResult,
  type StepOptions,
} from "./session.ts";
export { ConnectionClosed, type FrameTransport, openSessionSocket } from "./transport.ts";
