// The profiles' names, apart from profile.ts (which reads and hashes their files): an attach
// needs only the names.
export type ProfileName = 'full' | 'minimal' | 'static';

export const PROFILES: readonly ProfileName[] = ['full', 'minimal', 'static'];

/** The image an attach uses when none is named. */
export const DEFAULT_PROFILE: ProfileName = 'full';
