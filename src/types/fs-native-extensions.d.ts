// The package ships no types; these are the two calls we use (see its README).
declare module 'fs-native-extensions' {
  const fsx: {
    tryLock(fd: number, options?: { shared?: boolean }): boolean;
    unlock(fd: number): void;
  };
  export default fsx;
}
