'''A fake bluetoothd for meshprov's BlueZ radio tests (tests/radio_bluez.rs).

A python3-dbusmock template: Debian's bluez5 template (object manager, adapters, devices)
extended with what the mesh radio uses — the LE discovery filter, devices that appear during
discovery with RSSI, AdvertisingData (mesh AD types) and ServiceData (0x1827/0x1828) and
change them later, LEAdvertisingManager1, and a GATT Mesh Provisioning or Proxy service whose
Data In echoes back on Data Out. It is driven by its parameters (`-p JSON`):

    {
      "adapter": "hci0",            # null: no adapter at all
      "powered": true,
      "filter_error": [NAME, MSG],  # SetDiscoveryFilter raises this D-Bus error
      "start_error": [NAME, MSG],   # StartDiscovery raises this
      "advertise_error": [NAME, MSG],  # RegisterAdvertisement raises this
      "allow_mesh_ad": true,        # false: refuse AD types 0x29-0x2B like stock bluetoothd
      "power_off_after_ms": 500,    # the adapter is powered off (discovery stops) this long
                                    # after StartDiscovery
      "devices": [{
        "address": "C0:11:22:33:44:55",
        "cached": false,            # true: known before discovery, without RSSI (stale)
        "delay_ms": 50,             # appears this long after StartDiscovery
        "rssi": -55,
        "advertising_data": {"43": "00..."},   # AD type (decimal) -> hex
        "service_data": {"1827": "7b2c..."},   # 16-bit service UUID (hex) -> hex
        "updates": [{"after_ms": 100, "rssi": -60, "advertising_data": {...}}],
        "gatt": {"service": "1827", "mtu": 69, "echo": true}
      }]
    }

State for the test (filter set, advertisements with their properties, GATT writes) is read
back with org.meshprov.FakeBluez.State() on the adapter, a JSON string. Without "echo", the
device's firmware is the test's: it reads the writes from State() and answers with
org.meshprov.FakeBluez.Notify(address, value), a notification on Data Out. A firmware that
is provisioned becomes a proxy node with org.meshprov.FakeBluez.Become(address, service,
service_data): its GATT service (from the next connection on) and its advert change.
'''

import json
import time

import dbus
from dbusmock import OBJECT_MANAGER_IFACE, mockobject
from dbusmock.templates import bluez5
from gi.repository import GLib

BUS_NAME = 'org.bluez'
MAIN_OBJ = '/'
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

ADAPTER_IFACE = 'org.bluez.Adapter1'
DEVICE_IFACE = 'org.bluez.Device1'
ADV_MANAGER_IFACE = 'org.bluez.LEAdvertisingManager1'
ADV_IFACE = 'org.bluez.LEAdvertisement1'
SERVICE_IFACE = 'org.bluez.GattService1'
CHAR_IFACE = 'org.bluez.GattCharacteristic1'
TEST_IFACE = 'org.meshprov.FakeBluez'
MESH_AD_TYPES = (0x29, 0x2A, 0x2B)
DATA_CHARS = {'1827': ('2adb', '2adc'), '1828': ('2add', '2ade')}

# The JSON the test reads back.
STATE = {'filter': None, 'advertisements': [], 'writes': [], 'discovering': False}
PARAMS = {}


def uuid16(u):
    return f'0000{u.lower()}-0000-1000-8000-00805f9b34fb'


def raise_if(spec):
    if spec:
        raise dbus.exceptions.DBusException(spec[1], name=spec[0])


def bytes_of(hexstr):
    return dbus.Array(bytearray.fromhex(hexstr), signature='y', variant_level=1)


def ad_dict(ad):
    return dbus.Dictionary({dbus.Byte(int(t)): bytes_of(v) for t, v in ad.items()},
                           signature='yv', variant_level=1)


def sd_dict(sd):
    return dbus.Dictionary({uuid16(u): bytes_of(v) for u, v in sd.items()},
                           signature='sv', variant_level=1)


def emit_added(path):
    manager = mockobject.objects['/']
    manager.EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesAdded', 'oa{sa{sv}}', [
        dbus.ObjectPath(path), mockobject.objects[path].props])


def device_path(adapter, address):
    return f'/org/bluez/{adapter}/dev_' + address.replace(':', '_').upper()


def set_filter(adapter, discovery_filter):
    raise_if(PARAMS.get('filter_error'))
    STATE['filter'] = {str(k): (bool(v) if isinstance(v, dbus.Boolean) else
                                [str(x) for x in v] if isinstance(v, dbus.Array) else str(v))
                       for k, v in discovery_filter.items()}


def start_discovery(adapter):
    raise_if(PARAMS.get('start_error'))
    if not adapter.props[ADAPTER_IFACE]['Powered']:
        raise dbus.exceptions.DBusException('Resource Not Ready', name='org.bluez.Error.NotReady')
    STATE['discovering'] = True
    adapter.UpdateProperties(ADAPTER_IFACE, {'Discovering': dbus.Boolean(True)})
    for spec in PARAMS.get('devices', []):
        if not spec.get('cached'):
            GLib.timeout_add(spec.get('delay_ms', 50), add_device, spec)
    if 'power_off_after_ms' in PARAMS:
        GLib.timeout_add(PARAMS['power_off_after_ms'], power_off, adapter)


def power_off(adapter):
    '''What bluetoothd says when the adapter goes off: Discovering and Powered false.'''
    STATE['discovering'] = False
    adapter.UpdateProperties(ADAPTER_IFACE, {'Discovering': dbus.Boolean(False),
                                             'Powered': dbus.Boolean(False)})
    return False


def stop_discovery(adapter):
    STATE['discovering'] = False
    adapter.UpdateProperties(ADAPTER_IFACE, {'Discovering': dbus.Boolean(False)})


def add_device(spec, heard=True):
    adapter_name = PARAMS['adapter']
    path = device_path(adapter_name, spec['address'])
    props = {
        'Address': dbus.String(spec['address'], variant_level=1),
        'AddressType': dbus.String('random', variant_level=1),
        'Alias': dbus.String(spec['address'].replace(':', '-'), variant_level=1),
        'Paired': dbus.Boolean(False, variant_level=1),
        'Connected': dbus.Boolean(False, variant_level=1),
        'Trusted': dbus.Boolean(False, variant_level=1),
        'Blocked': dbus.Boolean(False, variant_level=1),
        'LegacyPairing': dbus.Boolean(False, variant_level=1),
        'ServicesResolved': dbus.Boolean(False, variant_level=1),
        'Adapter': dbus.ObjectPath(f'/org/bluez/{adapter_name}', variant_level=1),
        'UUIDs': dbus.Array([], signature='s', variant_level=1),
        'ServiceData': sd_dict(spec.get('service_data', {})),
        'AdvertisingData': ad_dict(spec.get('advertising_data', {})),
    }
    if heard and 'rssi' in spec:
        props['RSSI'] = dbus.Int16(spec['rssi'], variant_level=1)
    mockobject.objects['/'].AddObject(path, DEVICE_IFACE, props, [
        ('Connect', '', '', connect),
        ('Disconnect', '', '', disconnect),
    ])
    device = mockobject.objects[path]
    device.spec = spec
    emit_added(path)
    for update in spec.get('updates', []):
        GLib.timeout_add(update['after_ms'], update_device, device, update)
    return False


def update_device(device, update):
    '''One advertising report: the changed properties in one PropertiesChanged signal, as
    bluetoothd sends them (dbusmock's UpdateProperties cannot wrap dictionaries).'''
    changed = {}
    if 'rssi' in update:
        changed['RSSI'] = dbus.Int16(update['rssi'], variant_level=1)
    if 'advertising_data' in update:
        changed['AdvertisingData'] = ad_dict(update['advertising_data'])
    if 'service_data' in update:
        changed['ServiceData'] = sd_dict(update['service_data'])
    device.props[DEVICE_IFACE].update(changed)
    device.EmitSignal(dbus.PROPERTIES_IFACE, 'PropertiesChanged', 'sa{sv}as', [
        DEVICE_IFACE, dbus.Dictionary(changed, signature='sv'), dbus.Array([], signature='s')])
    return False


def service_path(device):
    '''The object path of the device's GATT service: one per service UUID.'''
    return device.path + ('/service000a' if device.spec['gatt']['service'] == '1827'
                          else '/service0010')


def connect(device):
    gatt = device.spec.get('gatt')
    if gatt is None:
        raise dbus.exceptions.DBusException('Software caused connection abort',
                                            name='org.bluez.Error.Failed')
    device.UpdateProperties(DEVICE_IFACE, {'Connected': dbus.Boolean(True)})
    service = service_path(device)
    if service not in mockobject.objects:
        data_in, data_out = DATA_CHARS[gatt['service']]
        root = mockobject.objects['/']
        root.AddObject(service, SERVICE_IFACE, {
            'UUID': dbus.String(uuid16(gatt['service']), variant_level=1),
            'Primary': dbus.Boolean(True, variant_level=1),
            'Device': dbus.ObjectPath(device.path, variant_level=1),
        }, [])
        emit_added(service)
        for name, uuid, flags, methods in [
            ('char000b', data_in, ['write-without-response'], [
                ('WriteValue', 'aya{sv}', '', write_value),
                ('ReadValue', 'a{sv}', 'ay', 'ret = dbus.Array([], signature="y")'),
            ]),
            ('char000d', data_out, ['notify'], [
                ('StartNotify', '', '', start_notify),
                ('StopNotify', '', '', stop_notify),
                ('ReadValue', 'a{sv}', 'ay', 'ret = dbus.Array([], signature="y")'),
            ]),
        ]:
            path = f'{service}/{name}'
            root.AddObject(path, CHAR_IFACE, {
                'UUID': dbus.String(uuid16(uuid), variant_level=1),
                'Service': dbus.ObjectPath(service, variant_level=1),
                'Value': dbus.Array([], signature='y', variant_level=1),
                'Flags': dbus.Array(flags, signature='s', variant_level=1),
                'Notifying': dbus.Boolean(False, variant_level=1),
                'MTU': dbus.UInt16(gatt.get('mtu', 23), variant_level=1),
            }, methods)
            mockobject.objects[path].device = device
            emit_added(path)
    device.UpdateProperties(DEVICE_IFACE, {'ServicesResolved': dbus.Boolean(True)})


def disconnect(device):
    device.UpdateProperties(DEVICE_IFACE, {'Connected': dbus.Boolean(False),
                                           'ServicesResolved': dbus.Boolean(False)})


def start_notify(char):
    char.UpdateProperties(CHAR_IFACE, {'Notifying': dbus.Boolean(True)})


def stop_notify(char):
    char.UpdateProperties(CHAR_IFACE, {'Notifying': dbus.Boolean(False)})


def write_value(char, value, options):
    '''Data In: records the write; echoes the value reversed on Data Out (if notifying);
    `de ad` makes the device drop the connection.'''
    data = bytes(value)
    kind = str(options.get('type', 'request'))
    STATE['writes'].append({'path': char.path, 'data': data.hex(), 'type': kind})
    if kind != 'command':
        raise dbus.exceptions.DBusException('Write not permitted',
                                            name='org.bluez.Error.NotPermitted')
    device = char.device
    if data == b'\xde\xad':
        GLib.timeout_add(10, lambda: disconnect(device) and False)
        return
    if not device.spec['gatt'].get('echo', True):
        return
    out = mockobject.objects[char.path.rsplit('/', 1)[0] + '/char000d']
    if out.props[CHAR_IFACE]['Notifying']:
        out.UpdateProperties(CHAR_IFACE, {
            'Value': dbus.Array(bytearray(reversed(data)), signature='y')})


def client_advertisement(adapter, path):
    '''The properties of the advertisement object `path`, read back from the client that
    registered it (bluetoothd does the same).'''
    bus = adapter.connection
    for name in bus.list_names():
        if not name.startswith(':') or name == bus.get_unique_name():
            continue
        try:
            obj = bus.get_object(name, path, introspect=False)
            return obj.GetAll(ADV_IFACE, dbus_interface=dbus.PROPERTIES_IFACE, timeout=3)
        except dbus.exceptions.DBusException:
            continue
    raise dbus.exceptions.DBusException('advertisement object not found',
                                        name='org.bluez.Error.Failed')


def register_advertisement(adapter, path, _options):
    raise_if(PARAMS.get('advertise_error'))
    props = client_advertisement(adapter, path)
    data = {int(k): bytes(v) for k, v in props.get('Data', {}).items()}
    if not PARAMS.get('allow_mesh_ad', True) and any(t in MESH_AD_TYPES for t in data):
        # What stock bluetoothd answers: src/shared/ad.c rejects the mesh AD types.
        raise dbus.exceptions.DBusException('Failed to parse advertisement.',
                                            name='org.bluez.Error.Failed')
    STATE['advertisements'].append({
        'path': str(path),
        'type': str(props.get('Type', '')),
        'data': {str(k): v.hex() for k, v in data.items()},
        'min_interval': int(props['MinInterval']) if 'MinInterval' in props else None,
        'max_interval': int(props['MaxInterval']) if 'MaxInterval' in props else None,
        'registered': time.monotonic(),
        'unregistered': None,
    })


def unregister_advertisement(_adapter, path):
    for a in STATE['advertisements']:
        if a['path'] == str(path) and a['unregistered'] is None:
            a['unregistered'] = time.monotonic()
            return
    raise dbus.exceptions.DBusException('Advertisement not registered',
                                        name='org.bluez.Error.DoesNotExist')


def state(_adapter):
    return json.dumps(STATE)


def notify(_adapter, address, value):
    '''Data Out of the device at `address` notifies `value` (the test's device firmware).'''
    device = mockobject.objects[device_path(PARAMS['adapter'], address)]
    out = mockobject.objects[service_path(device) + '/char000d']
    if not out.props[CHAR_IFACE]['Notifying']:
        raise dbus.exceptions.DBusException('Notifications are off',
                                            name='org.bluez.Error.NotPermitted')
    out.UpdateProperties(CHAR_IFACE, {'Value': dbus.Array(bytes(value), signature='y')})


def become(_adapter, address, service, service_data):
    '''The device at `address` now serves `service` (from its next connection) and
    advertises `service_data` (hex) for it: a provisioned node's Mesh Proxy service.'''
    device = mockobject.objects[device_path(PARAMS['adapter'], address)]
    device.spec['gatt']['service'] = str(service)
    update_device(device, {'service_data': {str(service): str(service_data)}})


def load(mock, parameters):
    # dbusmock registers the main object only after load(); the code below needs it now.
    mockobject.objects[MAIN_OBJ] = mock
    bluez5.load(mock, {})
    PARAMS.update(parameters or {})
    name = PARAMS.get('adapter')
    if not name:
        return
    path = bluez5.AddAdapter(mock, name, 'meshprov-test')
    adapter = mockobject.objects[path]
    adapter.props[ADAPTER_IFACE]['Powered'] = dbus.Boolean(PARAMS.get('powered', True),
                                                           variant_level=1)
    adapter.AddMethods(ADAPTER_IFACE, [
        ('SetDiscoveryFilter', 'a{sv}', '', set_filter),
        ('StartDiscovery', '', '', start_discovery),
        ('StopDiscovery', '', '', stop_discovery),
    ])
    adapter.AddProperties(ADV_MANAGER_IFACE, {
        'ActiveInstances': dbus.Byte(0, variant_level=1),
        'SupportedInstances': dbus.Byte(5, variant_level=1),
        'SupportedIncludes': dbus.Array([], signature='s', variant_level=1),
    })
    adapter.AddMethods(ADV_MANAGER_IFACE, [
        ('RegisterAdvertisement', 'oa{sv}', '', register_advertisement),
        ('UnregisterAdvertisement', 'o', '', unregister_advertisement),
    ])
    adapter.AddMethods(TEST_IFACE, [('State', '', 's', state), ('Notify', 'say', '', notify),
                                    ('Become', 'sss', '', become)])
    for spec in PARAMS.get('devices', []):
        if spec.get('cached'):
            add_device(spec, heard=False)
