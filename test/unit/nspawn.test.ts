// systemd-nspawn's command lines, machine names and machined's records, without root.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { RUNTIMES } from '../../src/runtimes/index.js';
import { machinedNames, machineName, parseMachineRecord, parseNspawnArgs } from '../../src/runtimes/nspawn.js';

const dir = mkdtempSync(join(tmpdir(), 'crashcart-unit-nspawn-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const parse = (line: string) => parseNspawnArgs(line.split(' ').filter(Boolean));

describe('systemd-nspawn command lines', () => {
  test('-M and --machine, in every spelling', () => {
    assert.equal(parse('-M web -D /srv/root /bin/sleeper').machine, 'web');
    assert.equal(parse('-Mweb -D /srv/root').machine, 'web');
    assert.equal(parse('--machine=web').machine, 'web');
    assert.equal(parse('--machine web').machine, 'web');
    assert.equal(parse('-qM web').machine, 'web');
    assert.equal(parse('--quiet --keep-unit --boot --link-journal=try-guest --network-veth -U --settings=override --machine=db').machine, 'db');
  });

  test('-D, --directory and --image; -x', () => {
    assert.deepEqual(parse('-D /srv/root'), { directory: '/srv/root', ephemeral: false });
    assert.deepEqual(parse('-D/srv/root'), { directory: '/srv/root', ephemeral: false });
    assert.deepEqual(parse('--directory /srv/root'), { directory: '/srv/root', ephemeral: false });
    assert.deepEqual(parse('-xD /srv/root'), { directory: '/srv/root', ephemeral: true });
    assert.deepEqual(parse('--ephemeral --image=/images/web.raw'), { image: '/images/web.raw', ephemeral: true });
    assert.deepEqual(parse('-i /images/web.raw'), { image: '/images/web.raw', ephemeral: false });
  });

  test('values of other options are skipped, not taken for options', () => {
    assert.deepEqual(parse('--bind /a:/b -u -M -D /srv/root'), { directory: '/srv/root', ephemeral: false });
    assert.deepEqual(parse('-E M=1 --setenv -D=x -p 80 -D /r'), { directory: '/r', ephemeral: false });
    // options with an optional value take it only after '='
    assert.deepEqual(parse('--volatile --private-users -D /r'), { directory: '/r', ephemeral: false });
  });

  test('options end at the command or at --', () => {
    assert.deepEqual(parse('-D /r /bin/sh -M other'), { directory: '/r', ephemeral: false });
    assert.deepEqual(parse('-D /r -- -M other'), { directory: '/r', ephemeral: false });
    assert.deepEqual(parse(''), { ephemeral: false });
  });
});

describe('machine names', () => {
  test('-M wins; else the directory\'s name; else the image\'s name without .raw', () => {
    assert.equal(machineName({ machine: 'web', directory: '/srv/db', ephemeral: false }, '/'), 'web');
    assert.equal(machineName({ directory: '/var/lib/machines/db/', ephemeral: false }, '/'), 'db');
    assert.equal(machineName({ image: '/var/lib/machines/web.raw', ephemeral: false }, '/'), 'web');
    assert.equal(machineName({ image: '/dev/vdb', ephemeral: false }, '/'), 'vdb');
  });

  test('a relative or missing directory is nspawn\'s working directory', () => {
    assert.equal(machineName({ directory: 'roots/../web', ephemeral: false }, '/srv'), 'web');
    assert.equal(machineName({ directory: '.', ephemeral: false }, '/srv/app'), 'app');
    assert.equal(machineName({ ephemeral: false }, '/var/lib/machines/cache'), 'cache');
  });

  test('cleaned up as a hostname; the host\'s root has no name of its own here', () => {
    assert.equal(machineName({ directory: '/srv/my root!', ephemeral: false }, '/'), 'myroot');
    assert.equal(machineName({ directory: '/srv/.web..1.', ephemeral: false }, '/'), 'web.1');
    assert.equal(machineName({ directory: '/', ephemeral: false }, '/'), undefined);
    assert.equal(machineName({ directory: '/srv/!!!', ephemeral: false }, '/'), undefined);
  });
});

describe('machined records', () => {
  const record = '# This is private data. Do not parse.\nNAME=web-3f2a9c01d2e4b5a6\nSCOPE=machine-web.scope\n' +
    'SERVICE=nspawn\nROOT=/var/lib/machines/.#machine.web\nID=5c4b2f0d\nLEADER=4242\nCLASS=container\nREALTIME=1700000000\n';

  test('NAME, LEADER, CLASS and SERVICE', () => {
    assert.deepEqual(parseMachineRecord(record), { name: 'web-3f2a9c01d2e4b5a6', leader: 4242, class: 'container', service: 'nspawn' });
    assert.equal(parseMachineRecord('NAME=web\n'), undefined);
    assert.equal(parseMachineRecord('NAME=web\nLEADER=0\n'), undefined);
    assert.equal(parseMachineRecord('LEADER=12\n'), undefined);
  });

  test('the containers of a machines directory by leader; VMs and unit links skipped', () => {
    const machines = join(dir, 'machines');
    mkdirSync(machines);
    writeFileSync(join(machines, 'web-3f2a9c01d2e4b5a6'), record);
    writeFileSync(join(machines, 'vm1'), 'NAME=vm1\nLEADER=99\nCLASS=vm\nSERVICE=libvirt-qemu\n');
    writeFileSync(join(machines, 'broken'), 'garbage');
    symlinkSync('web-3f2a9c01d2e4b5a6', join(machines, 'unit:machine-web.scope'));
    assert.deepEqual([...machinedNames(machines)], [[4242, 'web-3f2a9c01d2e4b5a6']]);
    assert.deepEqual([...machinedNames(join(dir, 'none'))], []);
  });

  test('nspawn has no exec of its own', () => {
    assert.equal(RUNTIMES.find((r) => r.name === 'nspawn')!.execCommand, undefined);
  });
});
