export type Listener<T> = (value: T) => void;
export declare class Emitter<Events extends object> {
    private listeners;
    /** Calls `fn` on every `event`; returns a function that unsubscribes. */
    on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void;
    off<K extends keyof Events>(event: K, fn: Listener<Events[K]>): void;
    /** Resolves with the next `event`. */
    once<K extends keyof Events>(event: K): Promise<Events[K]>;
    protected emit<K extends keyof Events>(event: K, value: Events[K]): void;
}
