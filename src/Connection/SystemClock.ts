/**
 * Deadlines on the system clock without a fiber. A fiber's `Clock` is the system clock unless a program provides
 * another (`TestClock` in tests); on the system clock a deadline can be one Node timer instead of a sleeping or racing
 * fiber, which is what the keepalive of every link and the connect timeout of every dial use. On any other clock the
 * callers keep their fiber-based version, so tests still drive them by adjusting the clock.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"

/**
 * The clock fibers see unless one is provided: the system clock, whose sleeps are Node timers.
 *
 * @since 0.1.0
 */
export const systemClock: Clock.Clock = Context.get(Context.empty(), Clock.Clock)

/**
 * Whether `clock` is the system clock (any instance of it: `Clock.Clock.defaultValue()` makes a new one).
 *
 * @since 0.1.0
 */
export const isSystemClock = (clock: Clock.Clock): boolean => clock.constructor === systemClock.constructor

/**
 * Node's longest timer (Node fires a longer one after 1 ms): longer deadlines are clamped or left to a fiber.
 *
 * @since 0.1.0
 */
export const MAX_TIMER_MILLIS = 2 ** 31 - 1
